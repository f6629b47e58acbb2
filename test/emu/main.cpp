// Runner for the CUDA emulator's own tests (emulation builds only).
#include "catch_session.h"

int main(int argc, char** argv) { return lockstep::test::run_catch_session(argc, argv); }
