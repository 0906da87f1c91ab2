#include "tests/test_util.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace pconv::testing {

// The folders the build was configured with, or PCONV_TEST_SOURCE_DIR / PCONV_TEST_BINARY_DIR
// when set: scripts/gpu-check runs binaries built on another machine, whose paths differ.
namespace {
std::string folder(const char* env, const char* configured) {
  const char* v = std::getenv(env);
  return v && *v ? v : configured;
}
}  // namespace

std::string source_dir() { return folder("PCONV_TEST_SOURCE_DIR", PCONV_SOURCE_DIR); }
std::string binary_dir() { return folder("PCONV_TEST_BINARY_DIR", PCONV_BINARY_DIR); }

std::string source_path(const std::string& relative) { return source_dir() + "/" + relative; }

std::string scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path p = fs::path(binary_dir()) / "test-scratch" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

AppRun run_app(const std::string& app, const std::string& args, const std::string& dir) {
  const std::string binary = binary_dir() + "/" + app;
  REQUIRE_MESSAGE(std::filesystem::exists(binary), binary << " is not built");
  const std::string out = dir + "/app.stdout", err = dir + "/app.stderr";
  const int rc = std::system((quote(binary) + " " + args + " >" + quote(out) + " 2>" + quote(err)).c_str());
  AppRun r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_bytes(out);
  r.err = read_bytes(err);
  return r;
}

void check_one_line_error(const AppRun& r, const std::string& needle) {
  CAPTURE(r.err);
  CHECK(r.status == 2);
  REQUIRE(!r.err.empty());
  CHECK(r.err.back() == '\n');
  const size_t start = r.err.rfind('\n', r.err.size() - 2);
  const std::string last = r.err.substr(start == std::string::npos ? 0 : start + 1);
  CHECK(last.find(": error: ") != std::string::npos);
  CHECK(last.find(needle) != std::string::npos);
  size_t errors = 0;
  for (size_t p = r.err.find("error"); p != std::string::npos; p = r.err.find("error", p + 1)) ++errors;
  CHECK(errors == 1);
}

ImageU8 random_image(int w, int h, uint64_t seed) {
  ImageU8 img;
  img.width = w;
  img.height = h;
  img.channels_in_file = 3;
  img.rgb.resize(size_t(w) * size_t(h) * 3);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;  // xorshift64
  for (auto& b : img.rgb) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = uint8_t(x >> 32);
  }
  return img;
}

Spawned spawn(const std::string& program, const std::vector<std::string>& args, const std::string& dir,
              uint64_t file_size_limit) {
  namespace fs = std::filesystem;
  const std::string path =
      program.find('/') == std::string::npos ? binary_dir() + "/" + program : program;
  const std::string name = fs::path(path).filename().string();
  Spawned s;
  s.out = dir + "/" + name + ".stdout", s.err = dir + "/" + name + ".stderr";
  std::vector<std::string> all{path};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  s.pid = ::fork();
  if (s.pid < 0) throw Error("fork failed");
  if (s.pid == 0) {  // only async-signal-safe calls until exec
    const int o = ::open(s.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(s.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) ::_exit(127);
    ::dup2(o, 1), ::dup2(e, 2);
    if (file_size_limit > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit limit{rlim_t(file_size_limit), rlim_t(file_size_limit)};
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    ::execv(path.c_str(), argv.data());
    ::_exit(127);
  }
  return s;
}

std::vector<int> child_pids(int parent) {
  std::vector<int> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after ')'.
    const std::string stat = read_bytes(entry.path().string() + "/stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    int ppid = -1;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(std::stoi(name));
  }
  return out;
}

int wait_exit(const Spawned& s, double timeout_s) {
  int status = 0;
  if (timeout_s > 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (::waitpid(s.pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        for (int child : child_pids(s.pid)) ::kill(child, SIGKILL);
        ::kill(s.pid, SIGKILL);
        ::waitpid(s.pid, &status, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } else {
    ::waitpid(s.pid, &status, 0);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Result run(const std::string& program, const std::vector<std::string>& args, const std::string& dir,
           uint64_t file_size_limit, double timeout_s) {
  const Spawned s = spawn(program, args, dir, file_size_limit);
  Result r;
  r.status = wait_exit(s, timeout_s);
  r.out = read_bytes(s.out), r.err = read_bytes(s.err);
  return r;
}

void check_same_tensors(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    const std::string tensor = name;
    INFO(tensor);
    REQUIRE(b.count(name) == 1);
    CHECK(t.shape() == b.at(name).shape());
    CHECK(t.to_double_vector() == b.at(name).to_double_vector());
  }
}

Tensor square_hole(int64_t N, int64_t side, DType dtype) {
  std::vector<double> v(size_t(N * side * side), 1.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t y = side / 4; y < 3 * side / 4; ++y)
      for (int64_t x = side / 4; x < 3 * side / 4; ++x) v[size_t((n * side + y) * side + x)] = 0;
  return Tensor::from_vector(v, {N, 1, side, side}).to(dtype);
}

void check_identical(const Tensor& a, const Tensor& b, const std::string& what) {
  CAPTURE(what);
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> va = a.to_double_vector(), vb = b.to_double_vector();
  int64_t differ = 0;
  for (size_t i = 0; i < va.size(); ++i) differ += va[i] != vb[i];
  CHECK_MESSAGE(differ == 0, differ << " of " << va.size() << " values differ");
}

}  // namespace pconv::testing
