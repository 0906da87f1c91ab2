#pragma once
// Training data: photos found in a folder, random crops with horizontal flips, paired with
// generated (or augmented file) masks; batches are decoded by a background thread into a
// bounded queue. Every sample is a pure function of (seed, epoch, position), so the whole
// state is three integers and a resumed run sees exactly the same data.
//
// Unreadable files: a file that fails to decode is reported once on stderr (naming it and the
// count so far), counted and skipped (the sample takes the next file of the epoch's order);
// once more than half of the files have failed, next() throws. Empty folders throw at
// construction.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/data/masks.h"
#include "core/io/image.h"
#include "core/tensor.h"

namespace pconv {

// Image files (jpg, jpeg, png, bmp, tga; any case) below `dir`, recursively, sorted by path.
// Symlinks are followed, but every folder is entered once and every file listed once (by
// device and inode), so a link loop ends and a second way to the same photos does not count
// them twice. Throws when `dir` is not a folder or cannot be read. Links that are not
// followed and sub-folders that cannot be read are warned about on stderr (at most 5 lines and
// a count), or handed back in `warnings`.
std::vector<std::string> list_images(const std::string& dir);
std::vector<std::string> list_images(const std::string& dir, std::vector<std::string>* warnings);

// File name without folder and extension ("a/b/photo.jpg" → "photo").
std::string file_stem(const std::string& path);

// ---- resampling of photos (masks use resize_nearest in core/data/masks.h)
// Bilinear (pixel centres, edges clamped) for enlarging; area averaging for shrinking, so
// large photos are not aliased. Both directions are handled per axis.
ImageU8 resize_image(const ImageU8& img, int width, int height);

// Photos whose long side is more than this many times the short one are cut to a window of
// that aspect ratio (random in training, centred for validation) before scaling.
constexpr int kMaxAspectRatio = 4;

// The width×height part of `img` at (x, y).
ImageU8 cut_image(const ImageU8& img, int x, int y, int width, int height);

// The image a training crop of size×size is taken from: `photo` cut to a random window of
// aspect ratio at most kMaxAspectRatio, then scaled so its short side is at least `size`
// (and, with max_short_side > 0, uniform in [size, min(short side, max_short_side)]). Returns
// `photo` itself or `storage`, which holds the cut or scaled copy. Either side is at most
// kMaxAspectRatio times the other (or `size`).
const ImageU8& fit_for_crop(const ImageU8& photo, int size, int64_t max_short_side, std::mt19937_64& rng,
                            ImageU8& storage);

// A crop of size×size at (x, y), optionally mirrored, as 3×size×size floats in [0,1].
Tensor crop_to_tensor(const ImageU8& img, int x, int y, int size, bool flip);

struct DatasetOptions {
  std::string image_dir;
  std::string mask_dir;   // empty: masks from the generator; else augmented masks from files
  MaskHoles mask_holes = MaskHoles::White;
  int64_t size = 256;     // square crops
  int64_t batch = 16;
  uint64_t seed = 0;
  bool flip = true;
  // When > 0, each photo is first scaled so its short side is uniform in
  // [size, max(size, min(short side, max_short_side))]: crops of large photos then see whole
  // objects, not only texture. 0 keeps the photo's own scale (small photos are still enlarged).
  int64_t max_short_side = 0;
  int prefetch = 3;       // batches decoded ahead
  // Threads that decode the samples of one batch in parallel. A GPU step outruns one thread
  // decoding full-size photos (~30 ms each); on the CPU the cores are busy with the model.
  // The batches are the same whatever the number.
  int workers = 1;
  // Bytes of decoded photos kept in memory (first come, first kept), so later epochs skip
  // decoding; 0 keeps none. The batches are the same either way.
  int64_t cache_bytes = 0;
  // Data-parallel training: of every batch of `batch` samples (the stream's position counts
  // whole batches), this process makes the share [shard·b, (shard+1)·b), b = batch/shards, so
  // `shards` processes together see exactly the batches of one process. batch must be a
  // multiple of shards.
  int64_t shard = 0, shards = 1;
  // Also make each batch's Batch::fill in the loader's threads: what a residual PConvUNet
  // (PConvUNetConfig::Fill::Harmonic) starts from, so the trainer's main thread does not solve
  // it. Off by default: runs whose model has no fill pay nothing.
  bool harmonic_fill = false;
  MaskGeneratorOptions generator;
  MaskAugmentOptions augment;
};

// Where the stream stands: the next sample is position `position` of epoch `epoch`.
struct DatasetState {
  uint64_t seed = 0;
  int64_t epoch = 0, position = 0;
  std::string to_string() const;                     // "seed=1 epoch=2 position=40"
  static DatasetState parse(const std::string& s);   // throws on anything else
  bool operator==(const DatasetState&) const = default;
};

struct Batch {
  Tensor images;  // N×3×S×S in [0,1] (N = batch/shards: this process's share)
  Tensor masks;   // N×1×S×S, 1 known, 0 hole
  // With DatasetOptions::harmonic_fill, N×3×S×S: harmonic_fill(imagenet_normalize(images) ·
  // masks, masks) bit for bit (core/data/network_fill.h); else undefined.
  Tensor fill;
  DatasetState next;  // the state after this batch
};

class TrainingData {
 public:
  explicit TrainingData(DatasetOptions options, DatasetState start = {});
  ~TrainingData();
  TrainingData(const TrainingData&) = delete;
  TrainingData& operator=(const TrainingData&) = delete;

  // Blocks only when the queue is empty; rethrows an error of the decoding thread.
  Batch next();
  // The state after the last batch next() returned (the start state before the first).
  DatasetState state() const { return state_; }
  // Drops the queue and continues from `s` (the seed must match the options).
  void restore(const DatasetState& s);

  const DatasetOptions& options() const { return opt_; }
  const std::vector<std::string>& files() const { return files_; }
  const std::vector<std::string>& mask_files() const { return mask_files_; }
  int64_t samples_per_epoch() const { return int64_t(files_.size()); }
  // Photos found unreadable so far (each warned about once and skipped).
  int64_t unreadable_count();

  // The sample at (epoch, position), computed on the calling thread: what the queue delivers.
  void sample(int64_t epoch, int64_t position, Tensor& image, MaskImage& mask);
  // The file order of an epoch: a permutation of files() seeded by (seed, epoch).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  void start_worker(DatasetState from);
  void stop_worker();
  void worker(DatasetState from);
  Batch make_batch(DatasetState& cursor);
  // The decoded photo (from the cache when there), or null when it cannot be read.
  std::shared_ptr<const ImageU8> try_read(int64_t file);

  DatasetOptions opt_;
  std::vector<std::string> files_, mask_files_;
  DatasetState state_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
  std::set<int64_t> bad_files_;  // guarded by mu_
  std::map<int64_t, std::shared_ptr<const ImageU8>> cache_;  // guarded by mu_
  int64_t cached_bytes_ = 0;                                 // guarded by mu_
  std::vector<MaskImage> mask_cache_; // decoded mask files, read once at construction
};

// ---- validation: a fixed set of (image, mask) pairs
struct ValidationSample {
  std::string name;
  Tensor image;  // 3×S×S
  MaskImage mask;     // S×S
};

// Every image below `image_dir` (sorted), centre-cropped to size×size after scaling its
// short side to `size`. Masks: with `mask_dir`, the sorted mask files in turn (resized
// nearest); otherwise generated with `seed`, sample i's target ratio in the middle of bucket
// i mod 6 of the paper's buckets, so every bucket is represented.
std::vector<ValidationSample> make_validation_set(const std::string& image_dir, int64_t size,
                                                  uint64_t seed, const std::string& mask_dir = "",
                                                  MaskHoles mask_holes = MaskHoles::White);

}  // namespace pconv
