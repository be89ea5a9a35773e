// corpus_main.cc: runs a fuzz target's seed corpus as a plain test, in every build.
//
// Usage: <name>_corpus_test DIR. Feeds each regular file of DIR to LLVMFuzzerTestOneInput
// once. Fails (exit 1) when DIR is missing or holds no file, so a corpus that went missing is
// noticed; a target that crashes on an input fails the test through the sanitizers or abort.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  std::error_code error;
  std::filesystem::directory_iterator it(argv[1], error);
  if (error) {
    std::fprintf(stderr, "%s: %s\n", argv[1], error.message().c_str());
    return 1;
  }
  int inputs = 0;
  for (const auto& entry : it) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    ++inputs;
  }
  if (inputs == 0) {
    std::fprintf(stderr, "%s: no corpus files\n", argv[1]);
    return 1;
  }
  std::printf("%d corpus inputs ran\n", inputs);
  return 0;
}
