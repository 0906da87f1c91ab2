// The GPU against the CPU at the shapes users run, not the small ones of test_gpu.cpp: one
// training step of the paper's 512×512 model (8 levels, width 64) with the whole loss, the
// bundled model's inference, and the discriminator's step of the texture training. Each
// comparison prints "<what>: relative error <e>" (max |gpu − cpu| / max |cpu|) for
// scripts/gpu-check. f32 with TF32 off (the backend's default). These run in the suite
// "gpu-real" (minutes of CPU time at 512²), not in "gpu": `pconv_tests -ts=gpu-real`.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "apps/inference/inference.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "losses/adversarial.h"
#include "losses/inpainting_loss.h"
#include "models/patch_discriminator.h"
#include "models/pconv_unet.h"
#include "models/vgg16.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;
using testing::max_rel_diff;

namespace {

// Irregular holes (~35 %): thresholded, nearest-upsampled noise, as the PyTorch bench draws.
Tensor blob_mask(int64_t N, int64_t side, uint64_t seed) {
  Generator gen(seed);
  Tensor coarse = Tensor::rand({N, 1, side / 32, side / 32}, gen, DType::F32);
  Tensor m = step(coarse, 0.35);
  while (m.size(2) < side) m = upsample_nearest2x(m);
  return m;
}

// Reports and returns the relative error of a GPU tensor against its CPU twin.
double compare(const std::string& what, const Tensor& gpu, const Tensor& cpu) {
  const double e = max_rel_diff(gpu.to(Device::CPU), cpu);
  MESSAGE(what << ": relative error " << e);
  return e;
}

}  // namespace

TEST_CASE("gpu-real: one training step of the paper's 512x512 model gives the CPU's loss and gradients" *
          doctest::test_suite("gpu-real")) {
    const int64_t N = 2, side = 512;
  PConvUNetConfig paper;  // 8 levels, width 64
  PConvUNet cpu(paper, 7, DType::F32), gpu(paper, 7, DType::F32);
  gpu.to(Device::CUDA);
  VGG16Options vo;
  vo.seed = 11;  // random VGG: the loss's arithmetic, not ImageNet's weights, is under test
  auto vgg_cpu = std::make_shared<VGG16Features>(vo);
  vo.device = Device::CUDA;
  auto vgg_gpu = std::make_shared<VGG16Features>(vo);
  InpaintingLoss loss_cpu(vgg_cpu), loss_gpu(vgg_gpu);

  Generator gen(3);
  const Tensor gt = Tensor::rand({N, 3, side, side}, gen, DType::F32, Device::CPU, -2, 2);
  const Tensor mask = blob_mask(N, side, 5);
  const Tensor input = mul(gt, mask);
  cpu.train();
  gpu.train();
  LossTerms tc = loss_cpu.compute(cpu.forward(input, mask), gt, mask);
  LossTerms tg = loss_gpu.compute(gpu.forward(input.to(Device::CUDA), mask.to(Device::CUDA)),
                                  gt.to(Device::CUDA), mask.to(Device::CUDA));
  tc.total.backward();
  tg.total.backward();

  CHECK(compare("step loss total", tg.total, tc.total) < 1e-4);
  CHECK(compare("step loss hole", tg.hole, tc.hole) < 1e-4);
  CHECK(compare("step loss style_out", tg.style_out, tc.style_out) < 1e-4);
  CHECK(compare("step loss perceptual", tg.perceptual, tc.perceptual) < 1e-4);
  double worst = 0;
  std::string worst_name;
  auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    const std::string& name = pc[i].first;
    REQUIRE(pc[i].second->grad().defined());
    REQUIRE(pg[i].second->grad().defined());
    const double e = compare("grad " + name, pg[i].second->grad(), pc[i].second->grad());
    if (e > worst) worst = e, worst_name = name;
  }
  MESSAGE("worst parameter gradient: " << worst_name << " " << worst);
  CHECK(worst < 2e-3);
  CHECK(compare("running_var pconv9", gpu.layer(9).bn()->running_var(), cpu.layer(9).bn()->running_var()) < 1e-4);
}

TEST_CASE("gpu-real: the bundled model (harmonic fill) gives the CPU's fill at 512x512" *
          doctest::test_suite("gpu-real")) {
    const std::string path = testing::source_path("data/model/pconv-photos.safetensors");
  std::unique_ptr<PConvUNet> cpu = inference::load_model(path);
  std::unique_ptr<PConvUNet> gpu = inference::load_model(path, Device::CUDA);
  Generator gen(9);
  const Tensor mask = blob_mask(1, 512, 13);
  const Tensor image = mul(Tensor::rand({1, 3, 512, 512}, gen, DType::F32, Device::CPU, -2, 2), mask);
  NoGradGuard no_grad;
  const Tensor yc = cpu->forward(image, mask);
  const Tensor yg = gpu->forward(image.to(Device::CUDA), mask.to(Device::CUDA));
  CHECK(compare("bundled model output", yg, yc) < 1e-4);
}

TEST_CASE("gpu-real: the discriminator's scores, losses and gradients match the CPU at 256x256" *
          doctest::test_suite("gpu-real")) {
    PatchDiscriminatorConfig dc;
  PatchDiscriminator cpu(dc, 21), gpu(dc, 21, DType::F32, Device::CUDA);
  Generator gen(4);
  const Tensor image = Tensor::rand({4, 3, 256, 256}, gen, DType::F32, Device::CPU, -2, 2);
  const Tensor real = Tensor::rand({4, 3, 256, 256}, gen, DType::F32, Device::CPU, -2, 2);
  const Tensor mask = blob_mask(4, 256, 8);
  cpu.power_iterate();
  gpu.power_iterate();
  auto dcpu_f = cpu.forward(image, mask), dcpu_r = cpu.forward(real, mask);
  auto dgpu_f = gpu.forward(image.to(Device::CUDA), mask.to(Device::CUDA));
  auto dgpu_r = gpu.forward(real.to(Device::CUDA), mask.to(Device::CUDA));
  CHECK(compare("discriminator scores", dgpu_f.scores, dcpu_f.scores) < 1e-4);
  const Tensor target_c = cpu.hole_fraction(mask, dcpu_f.scores.shape(), DType::F32);
  const Tensor target_g = gpu.hole_fraction(mask.to(Device::CUDA), dgpu_f.scores.shape(), DType::F32);
  CHECK(compare("discriminator hole targets", target_g, target_c) < 1e-6);
  Tensor lc = add(discriminator_loss(dcpu_r.scores, dcpu_f.scores, GanLoss::NonSaturating, target_c),
                  feature_matching_loss(dcpu_f.features, dcpu_r.features));
  Tensor lg = add(discriminator_loss(dgpu_r.scores, dgpu_f.scores, GanLoss::NonSaturating, target_g),
                  feature_matching_loss(dgpu_f.features, dgpu_r.features));
  CHECK(compare("discriminator loss", lg, lc) < 1e-4);
  lc.backward();
  lg.backward();
  auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    if (!pc[i].second->grad().defined()) continue;
    CHECK(compare("discriminator grad " + pc[i].first, pg[i].second->grad(), pc[i].second->grad()) < 1e-3);
  }
}
