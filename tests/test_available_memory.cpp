// The memory budget inside containers: cgroup v2 and v1 limits read from a
// fake cgroup tree, the smallest room wins; inpaint-run and inpaint-serve refuse work that would
// pass the container's limit instead of being killed by it (core/available_memory.h).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>

#include "apps/inference/inference.h"
#include "apps/serving/inpaint_server.h"
#include "core/available_memory.h"
#include "core/data/masks.h"
#include "core/io/image.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;
using testing::quote;
using testing::write_bytes;

namespace {

constexpr int64_t MiB = int64_t(1) << 20;

// A fake /proc and cgroup tree under `dir`: files are written as given.
struct FakeSystem {
  std::string dir;
  MemorySources sources;
  explicit FakeSystem(const std::string& name) : dir(testing::scratch_dir(name)) {
    sources.meminfo = dir + "/meminfo";
    sources.self_cgroup = dir + "/self_cgroup";
    sources.cgroup_root = dir + "/cgroup";
    fs::create_directories(sources.cgroup_root);
  }
  void file(const std::string& relative, const std::string& text) const {
    fs::create_directories(fs::path(dir + "/" + relative).parent_path());
    write_bytes(dir + "/" + relative, text + "\n");
  }
  int64_t budget() const { return available_memory_bytes(sources); }
};

// The apps and this process read the budget through $PCONV_CGROUP_ROOT for the scope.
struct CgroupRootEnv {
  explicit CgroupRootEnv(const std::string& root) { setenv("PCONV_CGROUP_ROOT", root.c_str(), 1); }
  ~CgroupRootEnv() { unsetenv("PCONV_CGROUP_ROOT"); }
};

}  // namespace

TEST_CASE("available memory: MemAvailable alone, and nothing readable") {
  FakeSystem sys("avail-meminfo");
  CHECK(sys.budget() == -1);
  sys.file("meminfo", "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8388608 kB");
  CHECK(sys.budget() == 8192 * MiB);
  // A cgroup v2 root without a limit ("max") changes nothing.
  sys.file("cgroup/memory.max", "max");
  sys.file("cgroup/memory.current", "123456");
  CHECK(sys.budget() == 8192 * MiB);
}

TEST_CASE("available memory: cgroup v2 — the least room on the path to the root, inactive file pages free") {
  FakeSystem sys("avail-v2");
  sys.file("meminfo", "MemAvailable: 8388608 kB");
  sys.file("self_cgroup", "0::/a/b");
  // The process's own cgroup: 600 MiB, 150 MiB charged of which 50 MiB inactive page cache.
  sys.file("cgroup/a/b/memory.max", std::to_string(600 * MiB));
  sys.file("cgroup/a/b/memory.current", std::to_string(150 * MiB));
  sys.file("cgroup/a/b/memory.stat", "anon 104857600\nfile 52428800\ninactive_file " + std::to_string(50 * MiB));
  CHECK(sys.budget() == 500 * MiB);
  // Its parent is tighter: 400 MiB with 300 MiB in use.
  sys.file("cgroup/a/memory.max", std::to_string(400 * MiB));
  sys.file("cgroup/a/memory.current", std::to_string(300 * MiB));
  CHECK(sys.budget() == 100 * MiB);
  // Over the limit already (it reclaims before killing): no room, not a negative budget.
  sys.file("cgroup/a/memory.current", std::to_string(500 * MiB));
  CHECK(sys.budget() == 0);
}

TEST_CASE("available memory: cgroup v1 — limit_in_bytes minus usage; 'unlimited' is no limit; v1 and v2 together") {
  FakeSystem sys("avail-v1");
  sys.file("meminfo", "MemAvailable: 8388608 kB");
  sys.file("self_cgroup", "12:pids:/x\n4:memory:/docker/abc\n0::/");
  sys.file("cgroup/memory/memory.limit_in_bytes", "9223372036854771712");  // the host: unlimited
  sys.file("cgroup/memory/memory.usage_in_bytes", std::to_string(5000 * MiB));
  CHECK(sys.budget() == 8192 * MiB);
  sys.file("cgroup/memory/docker/abc/memory.limit_in_bytes", std::to_string(1024 * MiB));
  sys.file("cgroup/memory/docker/abc/memory.usage_in_bytes", std::to_string(300 * MiB));
  sys.file("cgroup/memory/docker/abc/memory.stat", "inactive_file 1\ntotal_inactive_file " + std::to_string(100 * MiB));
  CHECK(sys.budget() == 824 * MiB);
  // A v2 limit too (hybrid hosts): the smaller wins.
  sys.file("cgroup/memory.max", std::to_string(700 * MiB));
  sys.file("cgroup/memory.current", "0");
  CHECK(sys.budget() == 700 * MiB);
  // Inside a container without its own cgroup namespace, /proc/self/cgroup names the host's
  // path, which is not in the container's tree: the tree's root still counts.
  sys.file("self_cgroup", "0::/system.slice/elsewhere.scope");
  CHECK(sys.budget() == 700 * MiB);
  // The environment variable moves the root for the apps.
  {
    CgroupRootEnv env(sys.sources.cgroup_root);
    CHECK(MemorySources::system().cgroup_root == sys.sources.cgroup_root);
  }
  CHECK(MemorySources::system().cgroup_root == "/sys/fs/cgroup");
}

TEST_CASE("available memory: inpaint-run and inpaint-serve refuse a pass past the container's limit") {
  FakeSystem sys("avail-apps");
  sys.file("cgroup/memory.max", std::to_string(48 * MiB));  // under any pass: 64 MiB of slack alone
  sys.file("cgroup/memory.current", std::to_string(8 * MiB));
  const std::string dir = sys.dir;
  PConvUNet(PConvUNetConfig{3, 4, 3}, 1).save_checkpoint(dir + "/model.safetensors");
  save_image(dir + "/photo.png", testing::random_image(64, 48, 1));
  MaskImage mask(48, 64);
  mask.set_hole(10, 10);
  save_mask(dir + "/mask.png", mask);
  const std::string args = "--model " + quote(dir + "/model.safetensors") + " --image " + quote(dir + "/photo.png") +
                           " --mask " + quote(dir + "/mask.png") + " --out " + quote(dir + "/out.png");
  {
    CgroupRootEnv env(sys.sources.cgroup_root);
    testing::check_one_line_error(testing::run_app("inpaint-run", args, dir), "40 MiB are available");
    CHECK_FALSE(fs::exists(dir + "/out.png"));
    // The server's inpainter: 413 with the same reason, before any pass.
    serve::InpaintRequest request;
    request.image = testing::random_image(64, 48, 1);
    request.mask = mask;
    const serve::Inpainter inpainter = serve::model_inpainter(inference::load_model(dir + "/model.safetensors"));
    try {
      inpainter(request, [] { return false; });
      FAIL("no refusal");
    } catch (const serve::ApiError& e) {
      CHECK(e.status == 413);
      CHECK(std::string(e.what()).find("available") != std::string::npos);
    }
  }
  // Without the fake limit the same run works.
  CHECK(testing::run_app("inpaint-run", args, dir).status == 0);
  CHECK(fs::exists(dir + "/out.png"));
}
