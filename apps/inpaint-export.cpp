// inpaint-export: turns a training checkpoint into a compact model file for inference and
// shipping (apps/inference/export_model.h): weights and BatchNorm statistics only, in f16, bf16 or
// f32, with the architecture and training metadata. inpaint-run, inpaint-eval and --init read it.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <sstream>

#include "apps/cli/cli.h"
#include "apps/inference/export_model.h"

using namespace pconv;

int main(int argc, char** argv) {
  CLI::App app{"Write a compact inference model (no optimiser state, f16/bf16/f32) from a checkpoint.",
               "inpaint-export"};
  std::vector<std::string> models;
  std::string out, dtype_name = "f16";
  std::vector<std::string> notes;
  bool force = false, with_discriminator = false;
  app.add_option("--model", models,
                 "checkpoint written by inpaint-train; several (repeat --model): their weights averaged, e.g. the "
                 "last checkpoints of an adversarial run")
      ->required();
  app.add_option("--out", out, "model file to write (.safetensors)")->required();
  app.add_option("--dtype", dtype_name, "storage type of the weights")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}))
      ->capture_default_str();
  app.add_option("--meta", notes, "KEY=VALUE added to the file's metadata (repeatable)");
  app.add_flag("--force", force, "overwrite an existing --out");
  app.add_flag("--with-discriminator", with_discriminator,
               "also keep the last --model's discriminator (f32, no Adam state): inpaint-train --init of the file "
               "continues a texture run with it");
  return cli::run(app, argc, argv, [&] {
    for (const std::string& model : models) cli::check_not_input(out, model, "the --model file");
    cli::check_can_write(out, force);
    std::map<std::string, std::string> extra;
    for (const std::string& n : notes) {
      const auto eq = n.find('=');
      if (eq == std::string::npos || eq == 0) cli::fail("--meta takes KEY=VALUE, got '" + n + "'");
      extra[n.substr(0, eq)] = n.substr(eq + 1);
    }
    const DType dtype = dtype_name == "f16" ? DType::F16 : dtype_name == "bf16" ? DType::BF16 : DType::F32;
    const ExportReport r = export_model(models, out, dtype, extra, with_discriminator);
    std::ostringstream line;
    line << "inpaint-export: wrote " << out;
    if (models.size() > 1) line << " (the mean of " << models.size() << " checkpoints)";
    line << ": " << r.tensors << " tensors, " << r.parameters
         << " values as " << dtype_name << ", " << (r.bytes + 524288) / 1048576 << " MiB; largest rounding error "
         << r.max_abs_error << " (relative to each tensor's largest value: " << r.max_rel_error << ")";
    cli::progress(line.str());
  });
}
