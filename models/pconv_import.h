#pragma once
// PConv UNets trained elsewhere, mapped exactly onto pconv's PConvUNet (models/pconv_unet.h).
//
// Known layouts (all the UNet of naoto0804/pytorch-inpainting-with-partial-conv, net.py:
// enc_1..enc_L, dec_L..dec_1, nearest ×2 upsampling, concat [upsampled, skip], BatchNorm
// everywhere but enc_1 and dec_1, ReLU / LeakyReLU(0.2)); they differ in the partial
// convolution's parameter names, biases and scaling:
//   naoto        enc_N.conv.input_conv.weight (+ all-ones mask_conv.weight), bias only on dec_1;
//                out = conv(x⊙M) / sum(M) + b
//   naoto-early  enc_N.conv.conv2d.{weight,bias} (+ all-ones mask2d), a bias on every layer;
//                the same formula
//   nvidia       enc_N.conv.{weight,bias}: NVIDIA's PartialConv2d with multi_channel=True;
//                out = conv(x⊙M) · C_in·k² / sum(M) + b
// pconv computes conv(x⊙M) · C_in·k² / sum(M) + b (DESIGN.md "Masks"), 0 where sum(M) = 0 —
// all three give 0 there too — so:
//   * naoto weights are divided by C_in·k² (the output is then the same);
//   * decoder layer dec_i is pconv layer 2L+1−i (enc_n is pconv n);
//   * a bias in front of a BatchNorm is folded into its running mean (BN(y + b) with mean μ
//     is BN(y) with mean μ − b). This is exact for inference: the two differ only at pixels
//     whose window holds no known input, which every next partial convolution masks out;
//   * enc_1 without a bias gets pconv1.bias = 0.
// Anything else — another architecture, a layer of the wrong shape, a mask convolution that
// is not all ones, NVIDIA's layer without multi_channel — is refused with what differs.
#include <map>
#include <string>
#include <vector>

#include "core/io/torch_checkpoint.h"
#include "models/pconv_unet.h"

namespace pconv {

struct ImportOptions {
  std::string layout = "auto";  // auto, naoto, naoto-early, nvidia
  std::string prefix = "auto";  // where the state dict is in the file: "model." "" ...; auto finds it
  // NVIDIA's PartialConv2d does not save whether it was built with multi_channel=True; the
  // user says so (pconv represents only that case).
  bool nvidia_multi_channel = false;
};

struct ImportedModel {
  PConvUNetConfig config;
  std::map<std::string, Tensor> state;           // pconv's names, F32
  std::map<std::string, std::string> metadata;   // pconv.config and import.* (source, layout, ...)
  std::vector<std::string> report;               // what was found and how it was mapped
};

// Throws Error("<path>: <reason>") when the checkpoint holds no known PConv UNet or one that
// pconv cannot represent exactly.
ImportedModel import_pconv(const TorchCheckpoint& file, const ImportOptions& options = {});

// Reads `path` (a PyTorch checkpoint, see core/io/torch_checkpoint.h) and imports it as above.
ImportedModel import_pconv_file(const std::string& path, const ImportOptions& options = {});

// The layout names ImportOptions::layout takes, for the CLI.
const std::vector<std::string>& import_layouts();

}  // namespace pconv
