#pragma once
// What a training run's folder holds, by name (apps/training/trainer.h lists it):
// checkpoints/step-<8 digits>.safetensors, the CSV logs a resume truncates to its step, and the
// "<file>.tmp-<pid>" temporaries a killed writer leaves behind.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pconv {

// Checkpoints of a run folder (out/checkpoints/step-*.safetensors), oldest first.
std::vector<std::string> list_checkpoints(const std::string& out_dir);
// A checkpoint file, or a run folder / its checkpoints folder: the latest checkpoint in it.
std::string resolve_checkpoint(const std::string& path);

namespace training {

// The CSV logs' headers. Those of earlier versions: their rows are kept, the new columns read as 0.
inline constexpr const char* kLogHeader =
    "step,total,valid,hole,perceptual,style_out,style_comp,tv,lr,adv,fm,d_loss,d_real,d_fake";
inline constexpr const char* kValHeader = "step,loss,psnr,ssim,l1_percent,hole_detail";
inline constexpr const char* kLegacyLogHeader = "step,total,valid,hole,perceptual,style_out,style_comp,tv,lr";
inline constexpr const char* kLegacyValHeader = "step,loss,psnr,ssim,l1_percent";

// "step-00000012.<ext>".
std::string step_file(int64_t step, const std::string& ext);
// The step of "step-00000012.safetensors", or −1 for any other name.
int64_t checkpoint_step(const std::filesystem::path& p);
// What out/checkpoints holds under checkpoint names, oldest first: only files, or anything.
std::vector<std::string> checkpoint_entries(const std::string& out_dir, bool files_only);
// The run folder a --resume path belongs to: the folder given (or the one above its
// checkpoints/), or, for a file inside a run's checkpoints/, that run; "" otherwise.
std::string run_folder_of(const std::string& resume);

// Keeps the rows of a CSV log up to `step` (a resumed run rewrites what came after) and
// returns them as numbers. A log of an earlier version (`legacy` header, a prefix of `header`)
// keeps its rows, with 0 in the columns it did not have.
std::vector<std::vector<double>> truncate_log(const std::string& path, const char* header, const char* legacy,
                                              int64_t step);
void append_line(const std::string& path, const std::string& line);
// Removes "<name>.tmp-<pid>" files (write_file_atomic's temporaries) whose process is gone.
void remove_stale_temp_files(const std::string& dir);

}  // namespace training
}  // namespace pconv
