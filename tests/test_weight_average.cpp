// The moving average of the generator's weights (layers/weight_average.h) and --ema in the
// trainer: the average itself against a hand computation, the swap, the checkpoint's layout
// (the model is the average, the live weights ride along), exact resume, and what
// validation scores.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "apps/training/trainer.h"
#include "core/io/safetensors.h"
#include "layers/batchnorm.h"
#include "layers/weight_average.h"
#include "tests/test_util.h"
#include "tests/train_options.h"

using namespace pconv;

using testing::check_same_tensors;
using testing::error_of;

namespace {

void set_all(BatchNorm2d& bn, const std::vector<float>& w, const std::vector<float>& mean) {
  std::map<std::string, Tensor> s = bn.state_dict();
  s["weight"] = Tensor::from_vector(w, {2});
  s["running_mean"] = Tensor::from_vector(mean, {2});
  bn.load_state_dict(s);
}

TrainOptions tiny_ema(const std::string& out, int64_t steps) {
  TrainOptions o = testing::tiny_train_options(out, steps);
  o.ema = 0.9;
  o.sample_every = 100;
  return o;
}

}  // namespace

TEST_CASE("weight average: d = min(decay, (1+n)/(10+n)) per update, over parameters and buffers") {
  BatchNorm2d bn(2);
  set_all(bn, {1, 2}, {0, 10});
  WeightAverage avg(bn, 0.5);
  CHECK(avg.current_decay() == doctest::Approx(0.1));  // (1+0)/(10+0)
  // Hand computation, in double, of three updates toward moving targets.
  double w0 = 1, m1 = 10;
  const float targets[3][2] = {{3, 20}, {5, 40}, {-1, 0}};
  for (int n = 0; n < 3; ++n) {
    set_all(bn, {targets[n][0], 2}, {0, targets[n][1]});
    const double d = std::min(0.5, (1.0 + n) / (10.0 + n));
    avg.update();
    w0 = d * w0 + (1 - d) * targets[n][0];
    m1 = d * m1 + (1 - d) * targets[n][1];
  }
  CHECK(avg.updates() == 3);
  CHECK(avg.state().at("weight").at({0}) == doctest::Approx(w0).epsilon(1e-6));
  CHECK(avg.state().at("weight").at({1}) == doctest::Approx(2.0));  // a constant stays put
  CHECK(avg.state().at("running_mean").at({1}) == doctest::Approx(m1).epsilon(1e-6));
  CHECK(avg.state().at("running_mean").at({1}) != doctest::Approx(0.0));  // not the live value

  // The swap: the module holds the average for the scope, then its own weights bit for bit.
  const std::map<std::string, Tensor> live = [&] {
    std::map<std::string, Tensor> c;
    for (const auto& [n, t] : bn.state_dict()) c[n] = t.clone();
    return c;
  }();
  {
    AveragedWeights scope(bn, avg);
    check_same_tensors(bn.state_dict(), avg.state());
    check_same_tensors(scope.live(), live);
  }
  check_same_tensors(bn.state_dict(), live);
  CHECK(bn.weight().requires_grad());  // still a parameter

  CHECK(error_of([&] { WeightAverage(bn, 1.0); }).find("[0, 1)") != std::string::npos);
  std::map<std::string, Tensor> bad = avg.state();
  bad.erase("running_var");
  CHECK(error_of([&] { avg.load(bad, 1); }).find("no running_var") != std::string::npos);
}

TEST_CASE("train --ema: the checkpoint's model is the average, the live weights beside it; resume is exact") {
  const std::string straight = testing::scratch_dir("ema-straight"), split = testing::scratch_dir("ema-split");
  Trainer a(tiny_ema(straight, 5));
  a.run();
  REQUIRE(a.average() != nullptr);
  CHECK(a.average()->updates() == 5);
  {
    Trainer b(tiny_ema(split, 3));
    b.run();
  }
  TrainOptions r = tiny_ema(split, 5);
  r.ema.reset(), r.size = r.batch = r.levels = r.width = 0, r.seed.reset();
  r.resume = split;
  Trainer c(r);
  CHECK(*c.options().ema == 0.9);  // taken back from the checkpoint
  CHECK(c.average()->updates() == 3);
  c.run();
  check_same_tensors(a.model().state_dict(), c.model().state_dict());
  check_same_tensors(a.average()->state(), c.average()->state());
  const std::string file = straight + "/checkpoints/step-00000005.safetensors";
  CHECK(testing::read_bytes(file) == testing::read_bytes(split + "/checkpoints/step-00000005.safetensors"));
  CHECK(testing::read_bytes(straight + "/val.csv") == testing::read_bytes(split + "/val.csv"));

  // What inference loads is the average; the live weights are training state.
  const SafetensorsFile f = load_safetensors(file);
  CHECK(f.metadata.at("train.ema_updates") == "5");
  std::map<std::string, Tensor> model, live;
  for (const auto& [n, t] : f.tensors) {
    if (n.rfind("train.live.", 0) == 0) live[n.substr(11)] = t;
    else if (!PConvUNet::is_training_state_key(n)) model[n] = t;
  }
  check_same_tensors(model, a.average()->state());
  check_same_tensors(live, a.model().state_dict());
  CHECK(model.at("pconv1.weight").to_double_vector() != live.at("pconv1.weight").to_double_vector());
  PConvUNet net(a.model().config(), 1);
  net.load_checkpoint(file);
  check_same_tensors(net.state_dict(), a.average()->state());

  // A resume with --ema 0 trains on from the live weights and drops the average.
  TrainOptions off = r;
  off.ema = 0.0, off.steps = 6;
  Trainer d(off);
  CHECK(d.average() == nullptr);
  check_same_tensors(d.model().state_dict(), live);
}

TEST_CASE("train --ema: validation scores the average, as a model --init from the checkpoint scores itself") {
  const std::string out = testing::scratch_dir("ema-val");
  Trainer t(tiny_ema(out, 4));
  t.run();
  const ValidationResult averaged = t.validate();
  const std::string init_out = testing::scratch_dir("ema-val-init");
  TrainOptions o = testing::tiny_train_options(init_out, 1);
  o.init = resolve_checkpoint(out);
  Trainer u(o);
  const ValidationResult fresh = u.validate();
  CHECK(averaged.loss == doctest::Approx(fresh.loss).epsilon(1e-9));
  CHECK(averaged.psnr == doctest::Approx(fresh.psnr).epsilon(1e-9));
  // And the live weights score otherwise (the average is not the live model).
  TrainOptions l = testing::tiny_train_options(testing::scratch_dir("ema-val-live"), 4);
  Trainer v(l);
  v.run();  // the same steps without --ema: the live weights of t
  check_same_tensors(v.model().state_dict(), t.model().state_dict());
  CHECK(v.validate().loss != doctest::Approx(averaged.loss).epsilon(1e-9));
}

TEST_CASE("train --ema: a decay outside [0, 1) is a one-line error") {
  TrainOptions o = tiny_ema(testing::scratch_dir("ema-bad"), 2);
  o.ema = 1.0;
  CHECK(error_of([&] { Trainer t(o); }).find("--ema 1: the decay must be in [0, 1)") != std::string::npos);
  o.ema = std::nan("");
  CHECK(error_of([&] { Trainer t(o); }).find("--ema nan") != std::string::npos);
}
