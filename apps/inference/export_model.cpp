#include "apps/inference/export_model.h"

#include <sys/stat.h>

#include <cmath>

#include "core/finite.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/patch_discriminator.h"  // kDiscPrefix, kDiscConfigKey
#include "models/pconv_unet.h"

namespace pconv {

namespace {

struct ModelWeights {
  PConvUNetConfig config;
  std::map<std::string, Tensor> weights;  // the model's state: no optimiser or training state
  std::map<std::string, std::string> metadata;
  // The discriminator's tensors (under kDiscPrefix, models/patch_discriminator.h), for
  // --with-discriminator.
  std::map<std::string, Tensor> discriminator;
};

// A checkpoint's model, checked complete (building the model checks that the weights are there
// with the config's shapes).
ModelWeights read_model(const std::string& checkpoint) {
  SafetensorsFile file = load_safetensors(checkpoint);
  if (!file.tensors.count("pconv1.weight"))
    throw Error(checkpoint + ": not a PConvUNet checkpoint (no pconv1.weight)");
  ModelWeights m;
  m.config = PConvUNet::checkpoint_config(file.metadata);
  for (auto& [name, t] : file.tensors)
    if (!PConvUNet::is_training_state_key(name)) m.weights.emplace(name, t);
    else if (name.rfind(kDiscPrefix, 0) == 0) m.discriminator.emplace(name, t);
  PConvUNet check(m.config, PConvUNet::Uninitialized{});
  try {
    check.load_state_dict(m.weights, true);
  } catch (const Error& e) {
    throw Error(checkpoint + ": " + e.what());
  }
  m.metadata = std::move(file.metadata);
  return m;
}

// The mean of the checkpoints' weights and BatchNorm statistics (in f64; counters from the
// last), with the last one's metadata. They must hold the same architecture.
ModelWeights average_models(const std::vector<std::string>& checkpoints) {
  ModelWeights first = read_model(checkpoints.front());
  if (checkpoints.size() == 1) return first;
  std::map<std::string, Tensor> sum;
  for (auto& [name, t] : first.weights) sum[name] = t.dtype() == DType::I64 ? t : t.to(DType::F64);
  ModelWeights last;
  for (size_t i = 1; i < checkpoints.size(); ++i) {
    ModelWeights m = read_model(checkpoints[i]);
    if (m.config.to_json() != first.config.to_json())
      throw Error("--model " + checkpoints[i] + " is a " + m.config.describe() + ", " + checkpoints.front() +
                  " a " + first.config.describe() + ": only the same architecture can be averaged");
    for (auto& [name, t] : m.weights) {
      Tensor& acc = sum.at(name);
      acc = t.dtype() == DType::I64 ? t : add(acc, t.to(DType::F64));
    }
    last = std::move(m);
  }
  const double n = double(checkpoints.size());
  for (auto& [name, t] : sum)
    if (t.dtype() != DType::I64) t = mul(t, 1.0 / n).to(first.weights.at(name).dtype());
  last.weights = std::move(sum);
  return last;  // with the last one's discriminator
}

}  // namespace

ExportReport export_model(const std::string& checkpoint, const std::string& out, DType dtype,
                          const std::map<std::string, std::string>& extra) {
  return export_model(std::vector<std::string>{checkpoint}, out, dtype, extra);
}

ExportReport export_model(const std::vector<std::string>& checkpoints, const std::string& out, DType dtype,
                          const std::map<std::string, std::string>& extra, bool with_discriminator) {
  if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
    throw Error(std::string("export: the model can be stored as f32, f16 or bf16, not ") + dtype_name(dtype));
  if (checkpoints.empty()) throw Error("export: no checkpoint given");
  ModelWeights model = average_models(checkpoints);
  const std::string& checkpoint = checkpoints.back();  // named in the errors below
  const PConvUNetConfig& config = model.config;
  std::map<std::string, Tensor>& weights = model.weights;
  const std::map<std::string, std::string>& source_metadata = model.metadata;

  ExportReport report;
  std::map<std::string, Tensor> stored;
  for (auto& [name, t] : weights) {
    if (t.dtype() == DType::I64) {
      stored.emplace(name, t);
      ++report.tensors;
      continue;
    }
    const Tensor f = t.to(DType::F64);
    const Tensor s = t.to(dtype);
    const Tensor back = s.to(DType::F64);
    const double* a = f.data<double>();
    const double* b = back.data<double>();
    double max_err = 0, max_val = 0;
    for (int64_t i = 0; i < f.numel(); ++i) {
      // Not finite before the conversion: broken weights, whatever the storage type (the model
      // check above refuses them first; this keeps the message right if it ever did not).
      if (!std::isfinite(a[i])) check_finite(checkpoint + ": " + name, t);
      if (!std::isfinite(b[i]))
        throw Error(checkpoint + ": " + name + " holds " + std::to_string(a[i]) + ", which " +
                    std::string(dtype_name(dtype)) + " cannot store (use --dtype f32 or bf16)");
      max_err = std::max(max_err, std::abs(a[i] - b[i]));
      max_val = std::max(max_val, std::abs(a[i]));
    }
    report.max_abs_error = std::max(report.max_abs_error, max_err);
    if (max_val > 0) report.max_rel_error = std::max(report.max_rel_error, max_err / max_val);
    report.parameters += t.numel();
    ++report.tensors;
    stored.emplace(name, s);
  }

  // The step, phase and options say how the model was trained; the data position and learning
  // rate only matter to a resume, which needs the full checkpoint anyway.
  std::map<std::string, std::string> metadata;
  for (auto& [k, v] : source_metadata)
    if (k == "train.step" || k == "train.phase" || k == "train.options") metadata[k] = v;
  metadata[PConvUNet::kConfigKey] = config.to_json();
  metadata["pconv.exported_dtype"] = std::string(dtype_name(dtype));
  if (checkpoints.size() > 1) {
    std::string list;
    for (const std::string& c : checkpoints) list += (list.empty() ? "" : ", ") + c;
    metadata["pconv.averaged_from"] = list;
  }
  for (auto& [k, v] : extra) metadata[k] = v;
  if (with_discriminator) {
    // f32, as trained: it is small, and f16 would move its spectral norms.
    if (!source_metadata.count(kDiscConfigKey))
      throw Error(checkpoint + ": --with-discriminator: the checkpoint has no discriminator (trained without "
                               "--adversarial or --feature-matching)");
    metadata[kDiscConfigKey] = source_metadata.at(kDiscConfigKey);
    for (auto& [name, t] : model.discriminator) {
      check_finite(checkpoint + ": " + name, t);
      stored.emplace(name, t.to(DType::F32));
      ++report.tensors;
    }
  }
  save_safetensors(out, stored, metadata);
  struct stat st {};
  if (::stat(out.c_str(), &st) == 0) report.bytes = st.st_size;
  return report;
}

}  // namespace pconv
