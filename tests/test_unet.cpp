// The PConv UNet: checkpoint names and shapes, the paper's parameter count, padding of odd
// sizes, independence from hole pixels, a whole-network f64 gradcheck, BatchNorm phases,
// and checkpoints of the wrong architecture.
#include <doctest/doctest.h>

#include <tuple>

#include "core/data/masks.h"
#include "core/metrics/metrics.h"

#include "core/autograd.h"
#include "core/cpu/cpu_backend.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "losses/inpainting_loss.h"
#include "models/harmonic_fill.h"
#include "models/pconv_unet.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;
using testing::gradcheck;
using testing::max_rel_diff;
using Vec = std::vector<double>;

namespace {

Tensor hole_mask(int64_t N, int64_t H, int64_t W, uint64_t seed, DType dtype = DType::F64) {
  Generator gen(seed);
  return step(Tensor::rand({N, 1, H, W}, gen, dtype), 0.4);  // ~40 % holes
}

PConvUNetConfig tiny(int64_t levels = 3, int64_t width = 4) {
  PConvUNetConfig c;
  c.levels = levels;
  c.width = width;
  return c;
}

// f64 gradcheck of net.forward(image, mask) with respect to `inputs`, sampled (12 elements per
// input) and at the tolerances a whole network's sums of many terms need.
testing::GradcheckResult unet_gradcheck(PConvUNet& net, const Tensor& image, const Tensor& mask,
                                        const std::vector<Tensor>& inputs) {
  testing::GradcheckOptions opt;
  opt.max_checks_per_input = 12;
  opt.rtol = 1e-5;
  opt.atol = 1e-7;
  return gradcheck([&](const std::vector<Tensor>&) { return net.forward(image, mask); }, inputs, opt);
}

}  // namespace

TEST_CASE("unet: checkpoint names and shapes of a 3-level model are exactly the paper's layout") {
  PConvUNet net(tiny(3, 4), 0, DType::F32);
  const int64_t w = 4;
  std::map<std::string, Shape> want = {
      {"pconv1.weight", {w, 3, 7, 7}},         {"pconv1.bias", {w}},
      {"pconv2.weight", {2 * w, w, 5, 5}},     {"pconv3.weight", {4 * w, 2 * w, 5, 5}},
      {"pconv4.weight", {2 * w, 6 * w, 3, 3}}, {"pconv5.weight", {w, 3 * w, 3, 3}},
      {"pconv6.weight", {3, w + 3, 3, 3}},     {"pconv6.bias", {3}}};
  const std::map<int, int64_t> bn_channels = {{2, 2 * w}, {3, 4 * w}, {4, 2 * w}, {5, w}};
  for (auto [n, channels] : bn_channels)
    for (const char* s : {"weight", "bias", "running_mean", "running_var"})
      want["pconv" + std::to_string(n) + ".bn." + s] = {channels};
  auto state = net.state_dict();
  std::vector<std::string> got_names, want_names;
  for (auto& [name, t] : state) got_names.push_back(name);
  for (auto& [name, s] : want) want_names.push_back(name);
  CHECK(got_names == want_names);
  for (auto& [name, s] : want) {
    const std::string tensor = name;
    CAPTURE(tensor);
    REQUIRE(state.count(name));
    CHECK(state[name].shape() == s);
  }
  CHECK(net.layer_count() == 6);
  CHECK(net.layer(1).kernel_size() == 7);
  CHECK((net.layer(1).stride() == 2 && net.layer(3).stride() == 2 && net.layer(4).stride() == 1));
  CHECK(net.layer(1).bn() == nullptr);
  CHECK(net.layer(6).bn() == nullptr);
}

TEST_CASE("unet: the paper's 8-level model has the parameter count of the table") {
  // PAPER.md's table, row by row: {in, out, kernel, BatchNorm}. A bias only without BN.
  struct Row { int64_t in, out, k; bool bn; };
  std::vector<Row> rows = {{3, 64, 7, false},   {64, 128, 5, true},   {128, 256, 5, true},
                           {256, 512, 3, true}};
  for (int i = 0; i < 4; ++i) rows.push_back({512, 512, 3, true});              // PConv5-8
  for (int i = 0; i < 4; ++i) rows.push_back({512 + 512, 512, 3, true});        // PConv9-12
  rows.insert(rows.end(), {{512 + 256, 256, 3, true}, {256 + 128, 128, 3, true},
                           {128 + 64, 64, 3, true}, {64 + 3, 3, 3, false}});    // PConv13-16
  int64_t expected = 0;
  for (const Row& r : rows) expected += r.in * r.out * r.k * r.k + (r.bn ? 2 * r.out : r.out);
  PConvUNet net;  // the default configuration is the paper's
  CHECK(net.config() == PConvUNetConfig{});
  CHECK(net.layer_count() == 16);
  MESSAGE("paper's 8-level width-64 PConvUNet: " << net.parameter_count() << " parameters");
  CHECK(net.parameter_count() == expected);
  CHECK(net.parameter_count() == 32'859'796);
}

TEST_CASE("unet: odd sizes are padded with hole and cropped back; hole pixels do not matter") {
  PConvUNet net(tiny(3, 4), 7, DType::F64);
  net.eval();
  Generator gen(1);
  Tensor x = Tensor::randn({2, 3, 13, 19}, gen, DType::F64);
  Tensor m = hole_mask(2, 13, 19, 2);
  Tensor y = net.forward(x, m);
  CHECK(y.shape() == Shape{2, 3, 13, 19});
  // The same as padding by hand to 16×24 (bottom/right) and cropping.
  Tensor yp = net.forward(pad2d(x, 0, 3, 0, 5), pad2d(m, 0, 3, 0, 5));
  CHECK(max_rel_diff(y, crop2d(yp, 0, 0, 13, 19)) < 1e-12);
  // Partial convolutions never read pixels under the mask's holes, so filling them with
  // anything gives the same output, bit for bit.
  Tensor noise = Tensor::randn(x.shape(), gen, DType::F64, Device::CPU, 0, 5);
  Tensor x2 = add(mul(x, m), mul(noise, rsub(1.0, m)));
  CHECK(max_rel_diff(x2, x) > 0.1);
  CHECK(net.forward(x2, m).to_double_vector() == y.to_double_vector());
}

TEST_CASE("unet: the library's composites keep the known pixels and take the output in the holes") {
  PConvUNet net(tiny(2, 4), 3, DType::F32);
  Generator gen(4);
  Tensor gt = Tensor::randn({1, 3, 8, 12}, gen);
  Tensor m = hole_mask(1, 8, 12, 5, DType::F32);
  Tensor out = net.forward(mul(gt, m), m);
  // What the loss and the training samples use (losses/inpainting_loss.h), and what
  // inpaint-eval scores (core/metrics/metrics.h, per image with a MaskImage).
  Tensor comp = composite(out, gt, m);
  Tensor comp_eval = composite(out.reshape({3, 8, 12}), gt.reshape({3, 8, 12}), mask_from_tensor(m));
  REQUIRE(comp.shape() == gt.shape());
  const Vec cv = comp.to_double_vector(), ev = comp_eval.to_double_vector();
  const Vec gv = gt.to_double_vector(), ov = out.to_double_vector(), mv = m.to_double_vector();
  int holes = 0, known = 0;
  for (size_t i = 0; i < cv.size(); ++i) {
    const bool is_known = mv[i % 96] == 1;
    holes += !is_known, known += is_known;
    CHECK(cv[i] == (is_known ? gv[i] : ov[i]));
    CHECK(ev[i] == cv[i]);
  }
  CHECK(holes > 0);
  CHECK(known > 0);
  CHECK(max_rel_diff(out, gt) > 0.1);  // the output differs from the truth, so the checks can fail
}

TEST_CASE("unet: whole-network f64 gradcheck (3 levels, width 4, 16×16, batch 2, BN training)") {
  PConvUNet net(tiny(3, 4), 11, DType::F64);
  net.train();
  Generator gen(12);
  Tensor image = Tensor::randn({2, 3, 16, 16}, gen, DType::F64).set_requires_grad(true);
  Tensor m = hole_mask(2, 16, 16, 13);
  // Non-trivial BN affine parameters, so their gradients are not all alike.
  for (int n = 2; n <= 5; ++n) {
    BatchNorm2d& bn = *net.layer(n).bn();
    bn.load_state_dict({{"weight", Tensor::rand({bn.channels()}, gen, DType::F64, Device::CPU, 0.5, 1.5)},
                        {"bias", Tensor::randn({bn.channels()}, gen, DType::F64, Device::CPU, 0, 0.3)}},
                       false);
  }
  std::vector<Tensor> inputs = {image, net.layer(1).weight(), net.layer(1).bias(),
                                net.layer(2).weight(), net.layer(3).bn()->weight(),
                                net.layer(4).weight(), net.layer(5).bn()->bias(),
                                net.layer(6).weight(), net.layer(6).bias()};
  auto r = unet_gradcheck(net, image, m, inputs);
  CHECK_MESSAGE(r.ok, r.report);
  MESSAGE("unet gradcheck: " << r.report);
  // Hole pixels of the input get exactly zero gradient.
  const Vec g = image.grad().to_double_vector(), mv = m.to_double_vector();
  for (size_t i = 0; i < g.size(); ++i)
    if (mv[(i / 768) * 256 + i % 256] == 0) CHECK(g[i] == 0);
}

TEST_CASE("unet: eval is deterministic and keeps statistics; fine-tune freezes only encoder BNs") {
  PConvUNet net(tiny(3, 4), 21, DType::F32);
  Generator gen(22);
  Tensor x = Tensor::randn({2, 3, 16, 16}, gen);
  Tensor m = hole_mask(2, 16, 16, 23, DType::F32);
  auto stats = [&](int n) { return net.layer(n).bn()->running_mean().to_double_vector(); };

  net.forward(x, m);  // training: every BN's running statistics move
  for (int n = 2; n <= 5; ++n) CHECK(stats(n) != Vec(size_t(net.layer(n).out_channels()), 0.0));

  net.eval();
  auto before = net.state_dict();
  std::vector<Vec> saved;
  for (auto& [name, t] : before) saved.push_back(t.to_double_vector());
  Tensor y1 = net.forward(x, m), y2 = net.forward(x, m);
  CHECK(y1.to_double_vector() == y2.to_double_vector());
  size_t i = 0;
  for (auto& [name, t] : net.state_dict()) CHECK(t.to_double_vector() == saved[i++]);

  net.train();
  net.set_finetune(true);
  CHECK(net.is_finetune());
  std::vector<Vec> old;
  for (int n = 2; n <= 5; ++n) old.push_back(stats(n));
  net.forward(x, m);
  CHECK(stats(2) == old[0]);  // encoder (pconv2..pconvL): kept
  CHECK(stats(3) == old[1]);
  CHECK(stats(4) != old[2]);  // decoder: still updating
  CHECK(stats(5) != old[3]);
  CHECK(net.trainable_parameters().size() == net.parameters().size());  // γ, β still learn
  net.set_finetune(false);
  net.forward(x, m);
  CHECK(stats(2) != old[0]);
}

namespace {

// Random running statistics, so that BatchNorm in evaluation mode is not the identity.
void randomise_running_stats(PConvUNet& net, uint64_t seed) {
  Generator gen(seed);
  auto state = net.state_dict();
  for (auto& [name, t] : state) {
    if (name.find("running_mean") != std::string::npos)
      t = Tensor::randn(t.shape(), gen, t.dtype(), t.device(), 0.0, 0.5);
    else if (name.find("running_var") != std::string::npos)
      t = Tensor::rand(t.shape(), gen, t.dtype(), t.device(), 0.5, 2.0);
  }
  net.load_state_dict(state, true);
}

}  // namespace

TEST_CASE("unet: inference (grad mode off) gives the graph pass's values bit for bit") {
  for (bool training : {false, true}) {
    for (auto size : {std::pair{16, 24}, std::pair{13, 19}}) {
      const auto [h, w] = size;
      CAPTURE(training);
      CAPTURE(size.first);
      CAPTURE(size.second);
      // Two identical models: in training mode each pass moves the running statistics.
      PConvUNet graph_net(tiny(3, 4), 31), no_grad_net(tiny(3, 4), 31);
      randomise_running_stats(graph_net, 32);
      randomise_running_stats(no_grad_net, 32);
      graph_net.train(training);
      no_grad_net.train(training);
      Generator gen(33);
      Tensor x = Tensor::randn({2, 3, h, w}, gen);
      Tensor m = hole_mask(2, h, w, 34, DType::F32);
      const auto x_before = x.to_float_vector(), m_before = m.to_float_vector();
      Tensor y_graph = graph_net.forward(x, m);
      REQUIRE(y_graph.grad_fn());  // the recording pass
      Tensor y;
      {
        NoGradGuard no_grad;
        y = no_grad_net.forward(x, m);
      }
      CHECK(!y.grad_fn());
      CHECK(y.shape() == y_graph.shape());
      CHECK(y.to_float_vector() == y_graph.to_float_vector());
      // The in-place steps never touch the caller's tensors.
      CHECK(x.to_float_vector() == x_before);
      CHECK(m.to_float_vector() == m_before);
      for (int n = 2; n <= 5; ++n)
        CHECK(no_grad_net.layer(n).bn()->running_mean().to_float_vector() ==
              graph_net.layer(n).bn()->running_mean().to_float_vector());
    }
  }
}

TEST_CASE("unet: in-place inference ops refuse to run with grad mode on") {
  Tensor x = Tensor::ones({1, 2, 4, 4});
  CHECK_THROWS_WITH_AS(relu_(x), doctest::Contains("grad mode off"), Error);
  CHECK_THROWS_WITH_AS(upsample_concat(x, Tensor::ones({1, 1, 8, 8})), doctest::Contains("grad mode off"), Error);
  NoGradGuard no_grad;
  CHECK_THROWS_WITH_AS(upsample_concat(x, Tensor::ones({1, 1, 8, 7})), doctest::Contains("not twice the size"),
                       Error);
  // upsample_concat against its two-step definition, batch 2 (channel blocks per image).
  Generator gen(5);
  Tensor low = Tensor::randn({2, 3, 4, 5}, gen), skip = Tensor::randn({2, 2, 8, 10}, gen);
  CHECK(upsample_concat(low, skip).to_float_vector() ==
        concat({upsample_nearest2x(low), skip}, 1).to_float_vector());
}

TEST_CASE("unet: inference holds no more activations than estimated, and far fewer than the graph") {
  // The peak of tensor bytes beyond the weights during one forward pass, against
  // PConvUNetConfig::inference_bytes (which inpaint-run uses to refuse passes that would not
  // fit): the estimate must hold and be close, i.e. it describes what the pass keeps.
  for (auto entry : {std::pair{tiny(8, 16), int64_t(256)}, std::pair{tiny(5, 8), int64_t(100)}}) {
    const PConvUNetConfig config = entry.first;
    const int64_t size = entry.second;
    CAPTURE(config.describe());
    PConvUNet net(config, 41);
    net.eval();
    // The input image and mask count too (the estimate includes them).
    auto peak_of_forward = [&](bool grad) {
      cpu_reset_peak_memory();
      const size_t base = cpu_memory_stats().in_use;
      Generator gen(42);
      Tensor x = Tensor::randn({1, 3, size, size}, gen);
      Tensor m = hole_mask(1, size, size, 43, DType::F32);
      if (grad) {
        Tensor y = net.forward(x, m);
      } else {
        NoGradGuard no_grad;
        Tensor y = net.forward(x, m);
      }
      return double(cpu_memory_stats().peak_in_use - base);
    };
    const double measured = peak_of_forward(false), graph = peak_of_forward(true);
    const double estimate = double(config.inference_bytes(1, size, size));
    MESSAGE(config.describe() << " at " << size << "²: inference peak " << measured / 1048576 << " MiB, estimate "
                              << estimate / 1048576 << " MiB, graph-recording pass " << graph / 1048576 << " MiB");
    CHECK(measured <= estimate);
    CHECK(measured >= 0.9 * estimate);
    CHECK(measured < 0.5 * graph);
  }
}

TEST_CASE("unet: checkpoints carry the configuration; the wrong architecture is a clear error") {
  const std::string dir = testing::scratch_dir("unet_checkpoint");
  PConvUNet a(tiny(3, 4), 31, DType::F32);
  Generator gen(32);
  Tensor x = Tensor::randn({1, 3, 16, 16}, gen);
  Tensor m = hole_mask(1, 16, 16, 33, DType::F32);
  a.forward(x, m);
  a.eval();
  a.save_checkpoint(dir + "/a.safetensors", {{"step", "17"}},
                    {{"optim.step", Tensor::full({1}, 17.0, DType::I64)}});
  CHECK_THROWS_WITH_AS(a.save_checkpoint(dir + "/x.safetensors", {}, {{"pconv1.weight", x}}),
                       "PConvUNet::save_checkpoint: extra tensor 'pconv1.weight' must be named optim.* or train.*",
                       Error);
  CHECK(PConvUNetConfig::from_json(a.config().to_json()) == a.config());

  PConvUNet b(tiny(3, 4), 99, DType::F64);  // other seed and dtype: converted on load
  SafetensorsFile file = b.load_checkpoint(dir + "/a.safetensors");  // optim.* skipped
  CHECK(file.tensors.count("optim.step") == 1);
  const auto& meta = file.metadata;
  CHECK(meta.at("step") == "17");
  CHECK(PConvUNet::checkpoint_config(meta) == tiny(3, 4));
  b.eval();
  CHECK(max_rel_diff(b.forward(x.to(DType::F64), m.to(DType::F64)), a.forward(x, m).to(DType::F64)) < 1e-5);

  // A model built without random weights (for loading) gives the same outputs once loaded.
  PConvUNet bare(tiny(3, 4), PConvUNet::Uninitialized{});
  bare.load_checkpoint(dir + "/a.safetensors");
  bare.eval();
  CHECK(max_rel_diff(bare.forward(x, m), a.forward(x, m)) == 0);

  PConvUNet deeper(tiny(4, 4), 0);
  CHECK_THROWS_WITH_AS(deeper.load_checkpoint(dir + "/a.safetensors"),
                       (dir + "/a.safetensors: checkpoint is a 3-level width-4 PConvUNet, the model "
                              "is a 4-level width-4 PConvUNet").c_str(),
                       Error);
  PConvUNet paper_depth(tiny(8, 2), 0);
  CHECK_THROWS_WITH_AS(paper_depth.load_checkpoint(dir + "/a.safetensors"),
                       (dir + "/a.safetensors: checkpoint is a 3-level width-4 PConvUNet, the model "
                              "is an 8-level width-2 PConvUNet").c_str(),
                       Error);
  // Without "pconv.config" the names and shapes decide.
  a.save(dir + "/bare.safetensors");
  CHECK(PConvUNet::checkpoint_config(load_safetensors(dir + "/bare.safetensors").metadata) ==
        PConvUNetConfig{});
  PConvUNet narrow(tiny(3, 8), 0);
  CHECK_THROWS_WITH_AS(narrow.load_checkpoint(dir + "/bare.safetensors"),
                       (dir + "/bare.safetensors: load_state_dict: pconv1.weight has shape "
                              "[4, 3, 7, 7] in the file, the model expects [8, 3, 7, 7]").c_str(),
                       Error);
  PConvUNet shallow(tiny(2, 4), 0);
  CHECK_THROWS_WITH_AS(shallow.load_checkpoint(dir + "/bare.safetensors"),
                       (dir + "/bare.safetensors: load_state_dict: pconv3.weight has shape "
                              "[16, 8, 5, 5] in the file, the model expects [4, 12, 3, 3]").c_str(),
                       Error);
  PConvUNet same(tiny(3, 4), 5);
  same.load_checkpoint(dir + "/bare.safetensors");
  same.eval();
  CHECK(same.forward(x, m).to_double_vector() == a.forward(x, m).to_double_vector());

  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json("{\"levels\": \"eight\"}"),
                       "PConvUNetConfig: 'levels' in '{\"levels\": \"eight\"}' is not an integer", Error);
  CHECK_THROWS_AS(PConvUNetConfig::from_json("not json"), Error);
  CHECK_THROWS_AS(PConvUNet(tiny(0, 4)), Error);
  Tensor gray = Tensor::randn({1, 1, 16, 16}, gen);
  CHECK_THROWS_WITH_AS(a.forward(gray, m),
                       "PConvUNet: image [1, 1, 16, 16] has 1 channels, the model takes 3", Error);
}

TEST_CASE("unet: configurations are bounded; the state's names and shapes are known before building") {
  for (auto [levels, width, channels] : {std::tuple{3, 4, 3}, {1, 1, 1}, {5, 3, 4}, {8, 2, 3}}) {
    PConvUNetConfig c;
    c.levels = levels, c.width = width, c.in_channels = channels;
    CAPTURE(c.describe());
    PConvUNet net(c, PConvUNet::Uninitialized{});
    std::map<std::string, Shape> built;
    int64_t elements = 0;
    for (const auto& [name, t] : net.state_dict()) built[name] = t.shape(), elements += t.numel();
    CHECK(c.state_shapes() == built);
    CHECK(c.state_elements() == elements);
    PConvUNet::check_state_shapes(c, net.state_dict());  // its own state passes
  }
  auto config = [](int64_t levels, int64_t width, int64_t in_channels) {
    PConvUNetConfig c;
    c.levels = levels, c.width = width, c.in_channels = in_channels;
    return c;
  };
  for (const PConvUNetConfig& bad : {config(0, 4, 3), config(17, 4, 3), config(3, 0, 3), config(3, 1025, 3),
                                     config(3, 4, 0), config(3, 4, 65), config(3, -4, 3)}) {
    CAPTURE(bad.describe());
    CHECK_THROWS_AS(bad.validate(), Error);
  }
  CHECK_THROWS_WITH_AS(config(3, 1025, 3).validate(),
                       "PConvUNetConfig: levels 3 (1..16), width 1025 (1..1024), in_channels 3 (1..64) out of range", Error);
  // Within each bound, but 16 levels of width 1024 would be ~70 G parameters.
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"levels":16,"width":1024})"),
                       doctest::Contains("parameters and statistics, over the limit of 1000000000"), Error);
  CHECK_THROWS_AS(PConvUNet(config(16, 1024, 3), PConvUNet::Uninitialized{}), Error);
  config(8, 64, 3).validate();  // the paper's model
  config(16, 1024, 3).layers();  // the table itself needs no memory
  // A huge number in the JSON does not wrap around into range.
  CHECK_THROWS_AS(PConvUNetConfig::from_json(R"({"width":18446744073709551615})"), Error);

  PConvUNet small(tiny(3, 4), 1);
  auto state = small.state_dict();
  CHECK_THROWS_WITH_AS(PConvUNet::check_state_shapes(tiny(3, 8), state),
                       "pconv1.bias has shape [4] in the file, a 3-level width-8 PConvUNet expects [8]",
                       Error);
  state.erase("pconv4.bn.running_var");
  CHECK_THROWS_WITH_AS(PConvUNet::check_state_shapes(tiny(3, 4), state),
                       "missing pconv4.bn.running_var (a 3-level width-4 PConvUNet has it)", Error);
}

TEST_CASE("unet: on the GPU, forward and gradients match the CPU (f32)" * doctest::test_suite("gpu")) {
  PConvUNet cpu(tiny(3, 8), 41, DType::F32), gpu(tiny(3, 8), 41, DType::F32);
  gpu.to(Device::CUDA);
  Generator gen(42);
  Tensor x = Tensor::randn({2, 3, 20, 28}, gen);  // padded to 24×32
  Tensor m = hole_mask(2, 20, 28, 43, DType::F32);
  for (bool training : {true, false}) {
    CAPTURE(training);
    cpu.train(training);
    gpu.train(training);
    cpu.zero_grad();
    gpu.zero_grad();
    Tensor yc = cpu.forward(x, m), yg = gpu.forward(x.to(Device::CUDA), m.to(Device::CUDA));
    CHECK(yg.device() == Device::CUDA);
    CHECK(max_rel_diff(yg.to(Device::CPU), yc) < 1e-4);
    sum(square(yc)).backward();
    sum(square(yg)).backward();
    for (int n : {1, 3, 6})
      CHECK(max_rel_diff(gpu.layer(n).weight().grad().to(Device::CPU),
                         cpu.layer(n).weight().grad()) < 1e-3);
    CHECK(max_rel_diff(gpu.layer(2).bn()->running_var().to(Device::CPU),
                       cpu.layer(2).bn()->running_var()) < 1e-5);
  }
}

TEST_CASE("unet: a residual model (fill harmonic) outputs the harmonic fill plus the network") {
  PConvUNetConfig with_fill = tiny(3, 4);
  with_fill.fill = PConvUNetConfig::Fill::Harmonic;
  // The configuration: in JSON only when set, so the paper's files stay as they were.
  CHECK(tiny(3, 4).to_json().find("fill") == std::string::npos);
  CHECK(with_fill.to_json().find("\"fill\":\"harmonic\"") != std::string::npos);
  CHECK(PConvUNetConfig::from_json(with_fill.to_json()) == with_fill);
  CHECK(PConvUNetConfig::from_json(R"({"levels":3,"width":4,"fill":"none"})") == tiny(3, 4));
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"levels":3,"fill":"telea"})"),
                       doctest::Contains("'fill'"), Error);
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"levels":3,"fill":1})"), doctest::Contains("'fill'"), Error);
  CHECK(with_fill.describe() == "3-level width-4 PConvUNet on a harmonic fill");
  CHECK(with_fill.inference_bytes(1, 64, 64) > tiny(3, 4).inference_bytes(1, 64, 64));

  // Same seed, same weights: the residual model is the plain one plus the fill, on a size
  // that is padded (20×18 at 3 levels), with grad mode on and off.
  PConvUNet plain(tiny(3, 4), 41, DType::F64), residual(with_fill, 41, DType::F64);
  plain.eval();
  residual.eval();
  Generator gen(42);
  Tensor x = Tensor::randn({2, 3, 20, 18}, gen, DType::F64);
  Tensor m = hole_mask(2, 20, 18, 43);
  x = mul(x, m);
  const Tensor fill = harmonic_fill(x, m);
  CHECK(max_rel_diff(residual.forward(x, m), add(plain.forward(x, m), fill)) < 1e-12);
  {
    NoGradGuard no_grad;
    CHECK(max_rel_diff(residual.forward(x, m), add(plain.forward(x, m), fill)) < 1e-12);
  }
  // With the last layer zeroed (how inpaint-train --init --fill harmonic starts) it is the fill.
  residual.load_state_dict({{"pconv6.weight", Tensor::zeros(residual.layer(6).weight().shape(), DType::F64)},
                            {"pconv6.bias", Tensor::zeros({3}, DType::F64)}},
                           false);
  CHECK(max_rel_diff(residual.forward(x, m), fill) == 0);

  // The fill is an input without gradient; the network's parameters train as before (f64
  // gradcheck in training mode).
  PConvUNet net(with_fill, 44, DType::F64);
  net.train();
  Tensor image = Tensor::randn({2, 3, 16, 16}, gen, DType::F64);
  Tensor mm = hole_mask(2, 16, 16, 45);
  std::vector<Tensor> inputs = {net.layer(1).weight(), net.layer(3).bn()->weight(), net.layer(5).weight(),
                                net.layer(6).weight(), net.layer(6).bias()};
  auto r = unet_gradcheck(net, image, mm, inputs);
  CHECK_MESSAGE(r.ok, r.report);

  // Checkpoints keep the fill; a plain model refuses a residual checkpoint.
  const std::string dir = testing::scratch_dir("unet_fill");
  residual.save_checkpoint(dir + "/r.safetensors");
  PConvUNet back(with_fill, 0, DType::F64);
  back.load_checkpoint(dir + "/r.safetensors");
  back.eval();
  CHECK(max_rel_diff(back.forward(x, m), fill) == 0);
  CHECK_THROWS_WITH_AS(plain.load_checkpoint(dir + "/r.safetensors"), doctest::Contains("on a harmonic fill"), Error);
}
