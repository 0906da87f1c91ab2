// inpaint-import: converts a PConv UNet trained elsewhere (PyTorch checkpoints of
// naoto0804/pytorch-inpainting-with-partial-conv or UNets on NVIDIA's PartialConv2d) into a
// pconv checkpoint that inpaint-run, inpaint-eval and inpaint-train --init read. What was
// mapped goes to stdout; a file pconv cannot run exactly is refused in one line, and nothing
// is written. The work is in models/pconv_import.h.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <string>

#include "apps/cli/cli.h"
#include "core/finite.h"
#include "core/io/safetensors.h"
#include "models/pconv_import.h"

using namespace pconv;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"Convert a PConv UNet checkpoint from PyTorch (.pth, zip or legacy format) into a pconv "
               "checkpoint (.safetensors).",
               "inpaint-import"};
  std::string from, out;
  ImportOptions options;
  bool force = false;
  app.add_option("--from", from, "the foreign checkpoint (e.g. naoto0804's 1000000.pth)")->required();
  app.add_option("--out", out, "the pconv checkpoint to write (.safetensors)")->required();
  app.add_option("--layout", options.layout, "the checkpoint's layout (auto: recognised by its tensor names)")
      ->check(CLI::IsMember(import_layouts()))
      ->capture_default_str();
  app.add_option("--prefix", options.prefix,
                 "where the model's state dict is in the file, e.g. 'model.' or '' (auto: found)")
      ->capture_default_str();
  app.add_flag("--nvidia-multi-channel", options.nvidia_multi_channel,
               "the NVIDIA PartialConv2d layers were built with multi_channel=True (the file does not say)");
  app.add_flag("--force", force, "overwrite --out");

  return cli::run(app, argc, argv, [&] {
    if (fs::path(out).extension() != ".safetensors") cli::fail(out + ": the output must be a .safetensors file");
    cli::check_not_input(out, from, "the --from file");
    cli::check_can_write(out, force);
    const ImportedModel model = import_pconv_file(from, options);
    for (const auto& [name, t] : model.state) check_finite(from + ": " + name + " (pconv's name)", t);
    for (const std::string& line : model.report) std::cout << line << "\n";
    save_safetensors(out, model.state, model.metadata);
    int64_t parameters = 0;
    for (const auto& [name, t] : model.state) parameters += t.numel();
    std::cout << "wrote " << out << ": " << model.config.describe() << " (" << parameters
              << " values); run it with: inpaint-run --model " << out << " --image IMG --mask MASK --out OUT.png"
              << std::endl;
  });
}
