// Runner for the unit tests (label unit).
#include "catch_session.h"

int main(int argc, char** argv) { return lockstep::test::run_catch_session(argc, argv); }
