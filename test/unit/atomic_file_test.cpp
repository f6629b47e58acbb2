#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "data_test_util.h"
#include "lockstep/core/atomic_file.h"
#include "lockstep/core/error.h"

using namespace lockstep;
using Catch::Matchers::Contains;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("AtomicFileWriter shows the file under its name only once committed",
          "[core][atomic_file]") {
  test::TempDir dir;
  const std::string path = dir.write("data.txt", "old contents");
  {
    AtomicFileWriter w(path);
    w.write("new ");
    w.write("contents");
    CHECK(w.bytes_written() == 12);
    CHECK(slurp(path) == "old contents");  // the old file is intact until commit
    CHECK(dir.entries().size() == 2);      // data.txt and the hidden temporary
    w.close();
    CHECK_THROWS_WITH(w.write("more"), Contains("already closed"));
    CHECK(slurp(path) == "old contents");
    w.commit();
  }
  CHECK(slurp(path) == "new contents");
  CHECK(dir.entries() == std::vector<std::string>{"data.txt"});
}

TEST_CASE("AtomicFileWriter leaves nothing behind when not committed", "[core][atomic_file]") {
  test::TempDir dir;
  const std::string path = dir.file("out.txt");
  auto fail_midway = [&] {
    AtomicFileWriter w(path);
    w.write("partial");
    throw Error("generator failed");
  };
  CHECK_THROWS_WITH(fail_midway(), Contains("generator failed"));
  CHECK(dir.entries().empty());
  {
    AtomicFileWriter w(path);
    w.write("x");
    w.discard();
    CHECK_THROWS(w.commit());
  }
  CHECK(dir.entries().empty());
  // A moved-from writer does not delete the moved-to writer's file.
  AtomicFileWriter a(path);
  a.write("moved");
  AtomicFileWriter b(std::move(a));
  std::vector<AtomicFileWriter> many;
  many.push_back(std::move(b));
  many.front().commit();
  CHECK(slurp(path) == "moved");
}

TEST_CASE("AtomicFileWriter errors name the path and the reason", "[core][atomic_file]") {
  test::TempDir dir;
  const std::string missing = dir.file("no/such/dir/out.txt");
  CHECK_THROWS_WITH(AtomicFileWriter(missing), Contains(missing) && Contains("No such file"));
  // Renaming onto a directory fails; the temporary is removed.
  std::filesystem::create_directories(dir.file("taken"));
  AtomicFileWriter w(dir.file("taken"));
  w.write("x");
  CHECK_THROWS_WITH(w.commit(), Contains("cannot rename") && Contains("taken"));
  CHECK(dir.entries() == std::vector<std::string>{"taken"});
  write_file_atomically(dir.file("one.txt"), "1");
  CHECK(slurp(dir.file("one.txt")) == "1");
}
