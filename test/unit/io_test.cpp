// safetensors files and ParamSet save/load: round trips, corruption, atomic replacement.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "lockstep/io/safetensors.h"
#include "lockstep/nn/linear.h"
#include "test_util.h"

using namespace lockstep;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "lockstep_io_test";
  fs::create_directories(dir);
  return dir / name;
}
std::vector<char> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_all(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream(p, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
}  // namespace

TEST_CASE("safetensors round trip keeps names, shapes, dtypes, bytes and metadata", "[io]") {
  const auto a = test::random_vector<float>(12, 1);
  const std::vector<uint64_t> keys = {1, 99, 1ull << 63};
  const std::vector<double> d = {3.5};
  const auto path = scratch("round.safetensors").string();
  io::write_safetensors(path,
                        {{"a", io::DType::F32, {3, 4}, a.data()},
                         {"keys", io::DType::U64, {3}, keys.data()},
                         {"scalar", io::DType::F64, {}, d.data()}},
                        {{"step", "42"}});
  const auto f = io::read_safetensors(path);
  CHECK(f.metadata.at("step") == "42");
  CHECK(f.metadata.size() == 1);  // checksums are not user metadata
  CHECK(f.get("a").shape == std::vector<int64_t>{3, 4});
  CHECK(f.get("a").as<float>() == a);
  CHECK(f.get("keys").as<uint64_t>() == keys);
  CHECK(f.get("scalar").as<double>() == d);
  CHECK_THROWS_WITH(f.get("a").as<double>(), Contains("'a' has dtype F32"));
  CHECK_THROWS_WITH(f.get("b"), Contains("no tensor named 'b'"));
}

TEST_CASE("Corrupted or truncated safetensors files are refused", "[io][errors]") {
  const auto values = test::random_vector<float>(64, 2);
  const auto path = scratch("corrupt.safetensors");
  io::write_safetensors(path.string(), {{"w", io::DType::F32, {64}, values.data()}});
  const auto good = read_all(path);

  auto flipped = good;
  flipped[flipped.size() - 5] ^= 0x40;  // one bit in the data section
  write_all(path, flipped);
  CHECK_THROWS_WITH(io::read_safetensors(path.string()),
                    Contains("checksum mismatch in tensor 'w'") && Contains(path.string()));

  write_all(path, std::vector<char>(good.begin(), good.end() - 16));
  CHECK_THROWS_WITH(io::read_safetensors(path.string()), Contains("outside"));

  write_all(path, std::vector<char>(good.begin(), good.begin() + 5));
  CHECK_THROWS_WITH(io::read_safetensors(path.string()), Contains("truncated"));

  auto bad_json = good;
  bad_json[9] = '#';
  write_all(path, bad_json);
  CHECK_THROWS_WITH(io::read_safetensors(path.string()), Contains("not valid JSON"));
}

TEST_CASE("safetensors shapes and offsets must be integers that fit the file", "[io][errors]") {
  const auto path = scratch("header.safetensors");
  // One tensor "t" of dtype F32 in an 8-byte data section, with `shape` and its end offset as
  // written.
  const auto file_with_shape = [&](const std::string& shape, int end = 8) {
    const std::string header = R"({"t":{"dtype":"F32","shape":)" + shape +
                               R"(,"data_offsets":[0,)" + std::to_string(end) + "]}}";
    std::vector<char> bytes(8 + header.size() + 8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(header.size() >> (8 * i));
    std::copy(header.begin(), header.end(), bytes.begin() + 8);
    write_all(path, bytes);
    return path.string();
  };
  CHECK(io::read_safetensors(file_with_shape("[2]")).get("t").numel() == 2);
  CHECK(io::read_safetensors(file_with_shape("[1,2,1]")).get("t").shape ==
        std::vector<int64_t>{1, 2, 1});
  // Found by fuzz/safetensors.cpp: a number beyond uint64 is a float to the JSON parser, and its
  // conversion was undefined behaviour; (2^62 + 2) x 4 bytes wrapped around to 8 and passed.
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("[46116860184273879042]")),
                    Contains("field 'shape' holds 4.6") && Contains("not an integer"));
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("[4611686018427387906]")),
                    Contains("shape [4611686018427387906] is too large for the 8-byte data"));
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("[4611686018427387904,2]")),
                    Contains("shape [4611686018427387904, 2] has more than 2^63 elements"));
  // An empty tensor needs no bytes, whatever its other dimensions (a stricter first fix refused
  // this; the fuzzer's write-and-read-back check caught it).
  CHECK(io::read_safetensors(file_with_shape("[0,4]", 0)).get("t").numel() == 0);
  CHECK(io::read_safetensors(file_with_shape("[4611686018427387904,0]", 0)).get("t").numel() == 0);
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("[4611686018427387904,0,2]", 0)),
                    Contains("more than 2^63 elements"));
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("[2.0]")), Contains("not an integer"));
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("[true]")), Contains("not an integer"));
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("[-2]")),
                    Contains("tensor 't' field 'shape' holds -2: a negative dimension"));
  std::vector<char> unnamed(8, '\0');
  const std::string header = R"({"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})";
  unnamed[0] = static_cast<char>(header.size());
  unnamed.insert(unnamed.end(), header.begin(), header.end());
  write_all(path, unnamed);
  CHECK_THROWS_WITH(io::read_safetensors(path.string()), Contains("a tensor has an empty name"));
  CHECK_THROWS_WITH(io::read_safetensors(file_with_shape("2")),
                    Contains("field 'shape' must be an array of integers, not number"));
}

TEST_CASE("ParamSet saves and loads parameters; a mismatched model is refused intact",
          "[io][params]") {
  Context ctx;
  nn::ParamSet<float> a;
  nn::Linear<float> la(a, "fc", 5, 3);
  a.allocate(ctx, 1);
  const auto path = scratch("params.safetensors").string();
  a.save(ctx, path, {{"model", "test"}});

  nn::ParamSet<float> b;
  nn::Linear<float> lb(b, "fc", 5, 3);
  b.allocate(ctx, 2);  // other seed: other values
  REQUIRE(b.to_host(ctx) != a.to_host(ctx));
  b.load(ctx, path);
  CHECK(b.to_host(ctx) == a.to_host(ctx));
  CHECK(a.layout_hash() == b.layout_hash());

  nn::ParamSet<float> c;
  nn::Linear<float> lc(c, "fc", 5, 4);
  c.allocate(ctx, 3);
  const auto before = c.to_host(ctx);
  CHECK_THROWS_WITH(c.load(ctx, path),
                    Contains("'fc.weight'") && Contains("(5, 3)") && Contains("(5, 4)"));
  CHECK(c.to_host(ctx) == before);
  CHECK(c.layout_hash() != a.layout_hash());
}

TEST_CASE("ParamSet lays out trainable parameters first, aligned", "[params]") {
  Context ctx;
  nn::ParamSet<float> ps;
  const auto s = ps.add("state", {3}, nn::Init::constant(1.0f), false);
  const auto w = ps.add("w", {5}, nn::Init::uniform(-1, 1));
  const auto b = ps.add("b", {2}, nn::Init::constant(0.5f));
  ps.allocate(ctx, 9);
  CHECK(ps.entry(w).offset == 0);
  CHECK(ps.entry(b).offset == 16);
  CHECK(ps.trainable_size() == 32);
  CHECK(ps.entry(s).offset == 32);
  CHECK(ps.value(b)[1] == 0.5f);
  CHECK(ps.value(s)[2] == 1.0f);
  CHECK(ps.values()[7] == 0.0f);  // padding stays zero
  CHECK(test::any_nonzero(std::vector<float>(ps.value(w), ps.value(w) + 5)));
}
