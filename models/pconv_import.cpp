// Mapping foreign PConv UNet checkpoints onto PConvUNet: see models/pconv_import.h.
#include "models/pconv_import.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/autograd.h"
#include "core/ops.h"

namespace pconv {

namespace {

// How one layout names a layer's tensors (after "<prefix>enc_3") and scales its output.
struct Layout {
  const char* name;
  const char* description;
  const char* weight;
  const char* bias;
  const char* mask_weight;  // the all-ones kernel that counts sum(M), when the file has it
  const char* mask_bias;    // must be zero when present
  bool divides_by_mask_sum;  // out = conv(x⊙M) / sum(M): weights are divided by C_in·k² for pconv
};

const Layout kLayouts[] = {
    {"naoto", "naoto0804's PartialConv (input_conv + all-ones mask_conv)", ".conv.input_conv.weight",
     ".conv.input_conv.bias", ".conv.mask_conv.weight", ".conv.mask_conv.bias", true},
    {"naoto-early", "naoto0804's early PConv2d (conv2d + all-ones mask2d)", ".conv.conv2d.weight",
     ".conv.conv2d.bias", ".conv.mask2d.weight", ".conv.mask2d.bias", true},
    {"nvidia", "NVIDIA's PartialConv2d (multi_channel=True)", ".conv.weight", ".conv.bias",
     ".conv.weight_maskUpdater", nullptr, false},
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string quoted_prefix(const std::string& p) { return p.empty() ? "the top level" : "'" + p + "'"; }

struct Found {
  const Layout* layout;
  std::string prefix;
};

// Where in the file an enc_1 of a known layout is.
Found detect(const TorchCheckpoint& file, const ImportOptions& options) {
  std::vector<Found> found;
  for (const auto& [name, info] : file.tensors())
    for (const Layout& l : kLayouts) {
      const std::string tail = std::string("enc_1") + l.weight;
      if (!ends_with(name, tail)) continue;
      const std::string prefix = name.substr(0, name.size() - tail.size());
      if (!prefix.empty() && prefix.back() != '.') continue;
      if (options.layout != "auto" && options.layout != l.name) continue;
      if (options.prefix != "auto" && options.prefix != prefix) continue;
      found.push_back({&l, prefix});
    }
  if (found.empty()) {
    std::string names;
    int shown = 0;
    for (const auto& [name, info] : file.tensors()) {
      if (shown++ == 4) { names += ", ..."; break; }
      names += (shown > 1 ? ", " : "") + name;
    }
    std::string want = options.layout == "auto" ? "enc_1.conv.input_conv.weight (naoto0804), "
                                                  "enc_1.conv.conv2d.weight (its early code) or "
                                                  "enc_1.conv.weight (NVIDIA PartialConv2d)"
                                                : "the " + options.layout + " layout's enc_1";
    if (options.prefix != "auto") want += " under " + quoted_prefix(options.prefix);
    throw Error("no PConv UNet of a known layout: expected " + want + "; the file's " +
                std::to_string(file.tensors().size()) + " tensors are " + (names.empty() ? "none" : names));
  }
  if (found.size() > 1) {
    std::string list;
    for (const Found& f : found) list += (list.empty() ? "" : ", ") + quoted_prefix(f.prefix) + " (" + f.layout->name + ")";
    throw Error("several PConv UNets in the file: " + list + "; choose one with --prefix");
  }
  return found[0];
}

bool all_equal(const Tensor& t, float value) {
  const Tensor f = t.to(DType::F32);
  const float* p = f.data<float>();
  for (int64_t i = 0; i < f.numel(); ++i)
    if (p[i] != value) return false;
  return true;
}

class Mapper {
 public:
  Mapper(const TorchCheckpoint& file, std::string prefix) : file_(file), prefix_(std::move(prefix)) {}

  bool has(const std::string& name) const { return file_.tensors().count(prefix_ + name) > 0; }
  const Shape& shape(const std::string& name) const { return file_.tensors().at(prefix_ + name).shape; }
  // The tensor as F32, marked as used; `want` (when given) must be its shape.
  Tensor take(const std::string& name, const Shape& want, const std::string& needed_by) {
    const std::string full = prefix_ + name;
    if (!file_.tensors().count(full)) throw Error("missing " + full + " (" + needed_by + ")");
    if (file_.tensors().at(full).shape != want)
      throw Error(full + " is " + shape_str(file_.tensors().at(full).shape) + "; " + needed_by + " needs " +
                  shape_str(want));
    used_.insert(full);
    Tensor t = file_.load(full).to(DType::F32);
    const float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(p[i])) throw Error(full + " holds a NaN or infinite value");
    return t;
  }
  void ignore(const std::string& name) {
    if (has(name)) used_.insert(prefix_ + name);
  }
  // Tensors under the prefix that no rule used: another architecture.
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& [name, info] : file_.tensors())
      if (name.compare(0, prefix_.size(), prefix_) == 0 && !used_.count(name)) out.push_back(name);
    return out;
  }
  const std::string& prefix() const { return prefix_; }

 private:
  const TorchCheckpoint& file_;
  std::string prefix_;
  std::set<std::string> used_;
};

std::string kernel_str(const Shape& w) {
  return std::to_string(w[1]) + "→" + std::to_string(w[0]) + " " + std::to_string(w[2]) + "×" + std::to_string(w[3]);
}

}  // namespace

const std::vector<std::string>& import_layouts() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v{"auto"};
    for (const Layout& l : kLayouts) v.emplace_back(l.name);
    return v;
  }();
  return names;
}

ImportedModel import_pconv(const TorchCheckpoint& file, const ImportOptions& options) {
  try {
    NoGradGuard no_grad;
    const Found found = detect(file, options);
    const Layout& layout = *found.layout;
    Mapper m(file, found.prefix);
    const std::string enc1 = std::string("enc_1") + layout.weight;
    if (std::string(layout.name) == "nvidia") {
      // Only a saved weight_maskUpdater tells (C_out×C_in×k×k with multi_channel, 1×1×k×k without).
      const std::string updater = std::string("enc_1") + layout.mask_weight;
      const bool saved = m.has(updater);
      const std::string single =
          "Without multi_channel the mask has one channel, sum(1) = k², and how the UNet merges the "
          "decoder's and the skip's masks at each concatenation is the model code's own, not in the file; "
          "pconv cannot represent that";
      if (saved && m.shape(updater).size() == 4 && m.shape(updater)[0] == 1 && m.shape(updater)[1] == 1)
        throw Error("NVIDIA PartialConv2d layout built without multi_channel (" + found.prefix + updater + " is " +
                    shape_str(m.shape(updater)) + "). " + single);
      if (!saved && !options.nvidia_multi_channel)
        throw Error("NVIDIA PartialConv2d layout: the file does not record whether its layers were built with "
                    "multi_channel=True. If they were (a mask of C channels, sum(1) = C_in·k²), pass "
                    "--nvidia-multi-channel and it is imported exactly. " + single);
    }
    const Shape first = m.shape(enc1);
    if (first.size() != 4 || first[2] != 7 || first[3] != 7)
      throw Error(found.prefix + enc1 + " is " + shape_str(first) + ", not the 7×7 first layer of a PConv UNet");
    int64_t levels = 0;
    while (m.has("enc_" + std::to_string(levels + 1) + layout.weight)) ++levels;

    ImportedModel out;
    out.config = PConvUNetConfig{levels, first[0], first[1]};
    out.config.validate();
    const std::string model_name = out.config.describe();
    PConvUNet model(out.config, PConvUNet::Uninitialized{});
    std::map<std::string, Tensor> expected = model.state_dict();

    const std::string src_file = std::filesystem::path(file.path()).filename().string();
    out.report.push_back(src_file + ": " + file.format() + " checkpoint, state dict at " +
                         quoted_prefix(found.prefix));
    out.report.push_back("layout: " + std::string(layout.description) + ", " + std::to_string(levels) +
                         " levels → " + model_name);
    int64_t masks_checked = 0;
    const int64_t L = levels;
    for (int64_t n = 1; n <= 2 * L; ++n) {
      const std::string src = n <= L ? "enc_" + std::to_string(n) : "dec_" + std::to_string(2 * L + 1 - n);
      const std::string dst = "pconv" + std::to_string(n);
      const std::string need = "layer " + dst + " of a " + model_name;
      const Shape wshape = expected.at(dst + ".weight").shape();
      Tensor w = m.take(src + layout.weight, wshape, need);
      const double window = double(wshape[1] * wshape[2] * wshape[3]);
      std::string line = "  " + src + " → " + dst + ": " + kernel_str(wshape);
      if (layout.divides_by_mask_sum) {
        w = mul(w, 1.0 / window);
        line += ", weight ÷ " + std::to_string(int64_t(window));
      }
      out.state[dst + ".weight"] = w;

      if (m.has(src + layout.mask_weight)) {
        const Shape ms = m.shape(src + layout.mask_weight);
        Tensor ones = m.take(src + layout.mask_weight, ms, "the mask kernel");
        if (ms != wshape)
          throw Error(m.prefix() + src + layout.mask_weight + " is " + shape_str(ms) + ", its layer's weight " +
                      shape_str(wshape));
        if (!all_equal(ones, 1.0f))
          throw Error(m.prefix() + src + layout.mask_weight +
                      " is not all ones, so sum(M) is not what partial convolution counts");
        ++masks_checked;
      }
      if (layout.mask_bias && m.has(src + layout.mask_bias)) {
        Tensor zero = m.take(src + layout.mask_bias, {wshape[0]}, "the mask kernel's bias");
        if (!all_equal(zero, 0.0f)) throw Error(m.prefix() + src + layout.mask_bias + " is not zero");
      }

      Tensor bias;
      if (m.has(src + layout.bias)) bias = m.take(src + layout.bias, {wshape[0]}, need);
      const bool src_bn = m.has(src + ".bn.weight"), dst_bn = expected.count(dst + ".bn.weight") > 0;
      if (src_bn != dst_bn)
        throw Error(m.prefix() + src + (src_bn ? " has a BatchNorm, " : " has no BatchNorm, ") + dst + " of a " +
                    model_name + (dst_bn ? " has one" : " has none"));
      if (dst_bn) {
        const Shape c{wshape[0]};
        const std::string bn = src + ".bn.";
        Tensor mean = m.take(bn + "running_mean", c, need);
        Tensor var = m.take(bn + "running_var", c, need);
        for (int64_t i = 0; i < var.numel(); ++i)
          if (var.data<float>()[i] < 0) throw Error(m.prefix() + bn + "running_var has a negative variance");
        out.state[dst + ".bn.weight"] = m.take(bn + "weight", c, need);
        out.state[dst + ".bn.bias"] = m.take(bn + "bias", c, need);
        m.ignore(bn + "num_batches_tracked");
        if (bias.defined()) {
          mean = sub(mean, bias);
          line += ", bias folded into the BatchNorm mean";
        }
        out.state[dst + ".bn.running_mean"] = mean;
        out.state[dst + ".bn.running_var"] = var;
        line += ", BatchNorm";
      } else {
        line += bias.defined() ? ", bias" : ", no bias (" + dst + ".bias = 0)";
        out.state[dst + ".bias"] = bias.defined() ? bias : Tensor::zeros({wshape[0]});
      }
      out.report.push_back(line);
    }

    const std::vector<std::string> unused = m.unused();
    if (!unused.empty()) {
      std::string list;
      for (size_t i = 0; i < unused.size() && i < 4; ++i) list += (i ? ", " : "") + unused[i];
      if (unused.size() > 4) list += ", ...";
      throw Error(std::to_string(unused.size()) + " tensors of the model are not part of a " + std::to_string(L) +
                  "-level " + layout.name + " PConv UNet: " + list);
    }
    if (masks_checked) out.report.push_back("ignored: " + std::to_string(masks_checked) + " mask kernels (all ones, checked), BatchNorm batch counters");

    // What else the file holds (training state), said so the user knows it was left out.
    std::map<std::string, int64_t> others;
    for (const auto& [name, info] : file.tensors())
      if (name.compare(0, found.prefix.size(), found.prefix) != 0) ++others[name.substr(0, name.find('.'))];
    for (const auto& [top, count] : others)
      out.report.push_back("not imported: '" + top + "' (" + std::to_string(count) + " tensors)");

    out.metadata[PConvUNet::kConfigKey] = out.config.to_json();
    out.metadata["import.source"] = src_file;
    out.metadata["import.format"] = file.format();
    out.metadata["import.layout"] = layout.name;
    for (const char* key : {"n_iter", "iteration", "epoch", "step"}) {
      auto it = file.scalars().find(key);
      if (it != file.scalars().end()) {
        out.metadata[std::string("import.") + key] = it->second;
        out.report.push_back(std::string(key) + " = " + it->second);
      }
    }
    return out;
  } catch (const Error& e) {
    throw Error(file.path() + ": " + e.what());
  }
}

namespace {

// Whether `needle` occurs in the file (read in chunks that overlap by the needle's length).
bool file_contains(const std::string& path, const std::string& needle) {
  std::ifstream in(path, std::ios::binary);
  std::string window, chunk(1 << 20, '\0');
  while (in) {
    in.read(chunk.data(), std::streamsize(chunk.size()));
    window.append(chunk.data(), size_t(in.gcount()));
    if (window.find(needle) != std::string::npos) return true;
    if (window.size() > needle.size()) window.erase(0, window.size() - needle.size());
  }
  return false;
}

// Keras .h5 files: recognised, never imported. HDF5 keeps group and attribute names as plain
// bytes, so PConv-Keras (MathiasGruber/PConv-Keras) shows by its layer names without an HDF5
// library; what differs is its architecture, which no reading of the weights would change.
[[noreturn]] void refuse_hdf5(const std::string& path) {
  if (file_contains(path, "p_conv2d"))
    throw Error(path + ": a PConv-Keras model (layers p_conv2d_*" +
                (file_contains(path, "outputs_img") ? std::string(", outputs_img") : std::string()) +
                "), which pconv cannot run exactly: its last partial convolution is followed by "
                "LeakyReLU(0.2) and a 1×1 convolution with a sigmoid (outputs_img), where pconv's last layer "
                "is linear; it takes images in [0,1], not ImageNet-normalised, and its last layer sees them "
                "too, which no rescaling of weights can undo because partial convolution renormalises by the "
                "mask; and it adds biases in holes. (Its HWIO kernels, [skip, upsampled] concatenation, "
                "biases before BatchNorm and BatchNorm epsilon 1e-3 alone could be mapped.)");
  throw Error(path + ": an HDF5 file (Keras .h5?) without PConv-Keras's layers (p_conv2d_*); inpaint-import "
              "reads PyTorch checkpoints and recognises PConv-Keras files only to say why they cannot be imported");
}

}  // namespace

ImportedModel import_pconv_file(const std::string& path, const ImportOptions& options) {
  {
    std::ifstream in(path, std::ios::binary);
    char head[8] = {};
    if (in.read(head, 8) && std::string(head, 8) == std::string("\x89HDF\r\n\x1a\n", 8)) refuse_hdf5(path);
  }
  const TorchCheckpoint file(path);
  return import_pconv(file, options);
}

}  // namespace pconv
