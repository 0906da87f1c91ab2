// inpaint-run's work (inpaint_files.h): pairing files, checking outputs up front, batching
// images of one size, the memory check, and the progress lines.
#include "apps/inference/inpaint_files.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "apps/cli/cli.h"
#include "apps/inference/bundled_model.h"
#include "core/available_memory.h"
#include "core/cpu/dot_precision.h"
#include "core/data/dataset.h"
#include "core/metrics/metrics.h"
#include "models/texture_transfer.h"

namespace pconv::inference {

namespace fs = std::filesystem;

namespace {

struct Job {
  std::string name, image, mask, out, raw;
};

std::string lower_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

std::string raw_path(const std::string& out) {
  const fs::path p(out);
  return (p.parent_path() / (p.stem().string() + "_raw" + p.extension().string())).string();
}

// Everything that would stop a write is checked before the first image is computed, so a run
// never stops half-way on a bad output path.
void check_output(const std::string& out, const Job& job, bool force) {
  const std::string ext = lower_extension(out);
  if (ext != ".png" && ext != ".jpg" && ext != ".jpeg")
    cli::fail(out + ": unknown image extension '" + ext + "' (use .png, .jpg or .jpeg)");
  cli::check_not_input(out, job.image, "the input image");
  cli::check_not_input(out, job.mask, "the mask");
  std::error_code ec;
  if (fs::is_directory(out, ec)) cli::fail(out + ": is a folder");
  cli::check_can_write(out, force);
  std::string dir = fs::path(out).parent_path().string();
  if (dir.empty()) dir = ".";
  cli::ensure_folder(dir);
  if (::access(dir.c_str(), W_OK) != 0) cli::fail(dir + ": cannot write into this folder");
}

std::vector<Job> folder_jobs(const std::string& image_dir, const std::string& mask_dir,
                             const std::string& out_dir) {
  std::error_code ec;
  if (!fs::is_directory(mask_dir, ec))
    cli::fail("--image is a folder, so --mask must be one too: " + mask_dir + " is not");
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec))
    cli::fail("--image is a folder, so --out must be one too: " + out_dir + " is a file");
  std::vector<Job> jobs;
  // The images pair with themselves as ground truth: only the mask pairing matters here.
  for (const EvalFiles& f : match_eval_files(image_dir, image_dir, mask_dir)) {
    const std::string out = (fs::path(out_dir) / (f.name + ".png")).string();
    jobs.push_back({f.name, f.result, f.mask, out, raw_path(out)});
  }
  if (jobs.empty()) cli::fail(image_dir + ": no images (png, jpg, jpeg, bmp, tga, gif, webp)");
  return jobs;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// What happens to an image that is not plain RGB.
std::string channels_note(int channels, const std::string& out) {
  const std::string ext = lower_extension(out);
  const bool png = ext == ".png";
  switch (channels) {
    case 1: return "grey; converted to RGB";
    case 2: return png ? "grey with alpha; converted to RGB, the alpha kept in the output"
                       : "grey with alpha; converted to RGB (alpha dropped: JPEG has none)";
    default: return png ? "RGBA; the alpha channel is kept in the output"
                        : "RGBA; alpha dropped (JPEG has none)";
  }
}

// "1 pass of 1024×512", "2 passes (1024×512, 512×512)".
std::string describe_passes(const std::vector<Pass>& passes) {
  auto size = [](const Pass& p) { return std::to_string(p.pass_width) + "×" + std::to_string(p.pass_height); };
  if (passes.empty()) return "no pass (no hole)";
  if (passes.size() == 1) return "1 pass of " + size(passes[0]);
  std::string s = std::to_string(passes.size()) + " passes (";
  for (size_t i = 0; i < passes.size() && i < 8; ++i) s += (i ? ", " : "") + size(passes[i]);
  return s + (passes.size() > 8 ? ", …)" : ")");
}

}  // namespace

void inpaint_files(InpaintFilesOptions options) {
  std::string& model = options.model;
  const std::string &image = options.image, &mask = options.mask, &out = options.out, &holes = options.holes,
                    &device_name = options.device_name;
  const bool raw = options.raw, force = options.force;
  int batch = options.batch;
  const int64_t max_pixels = options.max_pixels;
  HdOptions& hd = options.hd;
  const auto t_start = std::chrono::steady_clock::now();
  const MaskHoles convention = parse_mask_holes(holes);
  const Device device = cli::parse_device(device_name);
  if (options.precision == "bf16") {
    if (device != Device::CPU) cli::fail("--precision bf16 is implemented on the CPU only (use fp32)");
    set_cpu_dot_precision(CpuDotPrecision::BF16);  // says so when the CPU lacks AVX512-BF16
  }
  // On the CPU a batch costs more per image than one image at a time (inpaint-bench, 256²,
  // 2 cores: 0.12 s per image alone, 0.43 s per image in a batch of 16); GPUs gain from it.
  if (batch == 0) batch = device == Device::CPU ? 1 : 8;

  std::error_code ec;
  const bool folder_mode = fs::is_directory(image, ec);
  std::vector<Job> jobs;
  if (folder_mode) {
    jobs = folder_jobs(image, mask, out);
  } else {
    if (fs::is_directory(mask, ec)) cli::fail("--image is a file, so --mask must be one too: " + mask + " is a folder");
    jobs.push_back({file_stem(image), image, mask, out, raw_path(out)});
    if (lower_extension(out) == ".jpg" || lower_extension(out) == ".jpeg")
      cli::progress("inpaint-run: note: JPEG is lossy, so known pixels will not stay exact; use .png for that");
  }
  for (const Job& job : jobs) {
    check_output(job.out, job, force);
    if (raw) check_output(job.raw, job, force);
  }

  if (options.fill_only) {
    for (const Job& job : jobs) {
      const ImageU8 img = read_image_u8(job.image, max_pixels, ImageAlpha::Keep);
      const LoadedMask lm = load_mask(job.mask, convention);
      try {
        save_image(job.out, apply_texture(options.texture, harmonic_inpaint(img, lm.mask), lm.mask));
      } catch (const Error& e) {
        cli::fail(job.image + ": " + e.what());
      }
    }
    cli::progress("inpaint-run: harmonic fill (no network) of " + std::to_string(jobs.size()) + " image(s) to " +
                  out + " in " + cli::format_seconds(seconds_since(t_start)));
    return;
  }
  hd.strategy = parse_hd_strategy(options.hd_strategy);
  model = bundled::resolve_model(model, "inpaint-run");
  std::unique_ptr<PConvUNet> net;
  int64_t grey_masks = 0, alpha_masks = 0, converted = 0, done = 0;
  for (size_t start = 0; start < jobs.size();) {
    // A batch is consecutive images of one size that each run as one whole-image pass; an
    // image that its HD strategy crops or resizes runs alone.
    std::vector<ImageU8> images;
    std::vector<MaskImage> masks;
    bool whole_pass = true;
    size_t end = start;
    while (end < jobs.size() && end - start < size_t(batch) && whole_pass) {
      const Job& job = jobs[end];
      ImageU8 img = read_image_u8(job.image, max_pixels, ImageAlpha::Keep);
      const bool whole = whole_image_pass(hd, img.width, img.height);
      if (!images.empty() && (!whole || img.width != images[0].width || img.height != images[0].height)) break;
      LoadedMask lm = load_mask(job.mask, convention);
      if (lm.mask.width != img.width || lm.mask.height != img.height)
        cli::fail(job.mask + ": the mask is " + std::to_string(lm.mask.width) + "×" +
                  std::to_string(lm.mask.height) + ", the image " + job.image + " is " +
                  std::to_string(img.width) + "×" + std::to_string(img.height));
      if (lm.read_by_alpha && alpha_masks++ == 0) cli::progress("inpaint-run: note: " + alpha_mask_note(job.mask));
      if (lm.had_grey_levels && grey_masks++ == 0)
        cli::progress("inpaint-run: note: " + job.mask + " has grey levels; masks are thresholded at 50 %");
      if (img.channels_in_file != 3 && converted++ == 0)
        cli::progress("inpaint-run: note: " + job.image + " is " + channels_note(img.channels_in_file, job.out));
      const double ratio = hole_ratio(lm.mask);
      if (ratio == 1.0)
        cli::progress("inpaint-run: note: " + job.mask +
                      " is all hole: the network has no known pixel to start from, the output is a flat colour");
      else if (ratio == 0.0)
        cli::progress("inpaint-run: note: " + job.mask + " has no hole: the output equals the input");
      images.push_back(std::move(img));
      masks.push_back(std::move(lm.mask));
      whole_pass = whole;
      ++end;
    }
    if (!net) {
      // Loaded once the first images are known to be good, so their errors come first.
      const auto t_load = std::chrono::steady_clock::now();
      net = load_model(model, device);
      cli::progress("inpaint-run: " + net->config().describe() + " from " + model + " (" +
                    cli::format_seconds(seconds_since(t_load)) + "), " + std::to_string(jobs.size()) +
                    " image(s), mask holes are " + holes + ", on " + device_name);
    }
    // The network's passes: the whole batch at once, or the strategy's crops or resized photo.
    const int64_t unit = int64_t(1) << net->config().levels;
    std::vector<Pass> passes;
    if (whole_pass) {
      passes.push_back({{0, 0, images[0].width, images[0].height}, images[0].width, images[0].height});
    } else {
      passes = plan_passes(masks[0], hd, unit);
      cli::progress("inpaint-run: " + jobs[start].name + " is " + std::to_string(images[0].width) + "×" +
                    std::to_string(images[0].height) + ": " + hd_strategy_name(hd.strategy) +
                    " strategy, " + describe_passes(passes));
    }
    if (device == Device::CPU) {
      const bool limited = options.memory_limit_gib > 0;
      const MemoryCheck memory =
          check_memory(net->config(), int64_t(images.size()), passes,
                       limited ? int64_t(options.memory_limit_gib * double(int64_t(1) << 30)) : 0);
      if (!memory.fits())
        cli::fail(jobs[start].image + ": " + std::to_string(images.size()) + " image(s) of " +
                  std::to_string(images[0].width) + "×" + std::to_string(images[0].height) + " need about " +
                  format_bytes(memory.need) + " for the " + net->config().describe() + ", " +
                  format_bytes(memory.have) + (limited ? " allowed by --memory-limit" : " are available") +
                  " (use " + (hd.strategy == HdStrategy::Original ? "--hd-strategy crop or resize, " : "") +
                  "a smaller image" + (images.size() > 1 ? ", --batch 1" : "") + " or a machine with more memory)");
    }
    std::vector<Inpainted> results;
    try {
      if (whole_pass) {
        std::vector<const ImageU8*> image_ptrs;
        std::vector<const MaskImage*> mask_ptrs;
        for (size_t i = 0; i < images.size(); ++i) {
          image_ptrs.push_back(&images[i]);
          mask_ptrs.push_back(&masks[i]);
        }
        results = inpaint_batch(*net, image_ptrs, mask_ptrs, raw);
      } else {
        results.push_back(inpaint_any_size(*net, images[0], masks[0], hd, raw));
      }
    } catch (const Error& e) {
      cli::fail(jobs[start].image + ": " + e.what());
    }
    for (size_t i = 0; i < results.size(); ++i) {
      const Job& job = jobs[start + i];
      results[i].composite = apply_texture(options.texture, std::move(results[i].composite), masks[i]);
      save_image(job.out, results[i].composite);
      if (raw) save_image(job.raw, results[i].raw);
      ++done;
      if (folder_mode)
        cli::progress("inpaint-run: " + std::to_string(done) + "/" + std::to_string(jobs.size()) + " " +
                      job.name + " → " + job.out);
    }
    start = end;
  }
  if (grey_masks > 1)
    cli::progress("inpaint-run: " + std::to_string(grey_masks) + " masks had grey levels (thresholded at 50 %)");
  if (converted > 1)
    cli::progress("inpaint-run: " + std::to_string(converted) + " images were grey or had alpha");
  cli::progress("inpaint-run: wrote " + std::to_string(done) + " image(s) to " + out +
                " in " + cli::format_seconds(seconds_since(t_start)));
}

}  // namespace pconv::inference
