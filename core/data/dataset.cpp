// Training and validation data. See core/data/dataset.h.
#include "core/data/dataset.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "core/data/network_fill.h"

namespace pconv {

namespace fs = std::filesystem;

namespace {

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".tga" || ext == ".gif" ||
         ext == ".webp";
}

// A file's identity: two paths (symlinks, hard links, bind mounts) to one file share it.
struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator<(const FileId& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
};
std::optional<FileId> file_id(const fs::path& p, struct stat& st) {
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;  // a broken link, a file gone meanwhile
  return FileId{st.st_dev, st.st_ino};
}

}  // namespace

std::vector<std::string> list_images(const std::string& dir, std::vector<std::string>* warnings) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a folder");
  auto warn = [&](const std::string& w) {
    if (warnings) warnings->push_back(w);
  };
  // Depth first with an explicit stack (no recursion limit), following symlinks, but each
  // folder is entered once and each file listed once by device and inode: a link back to a
  // folder above (a loop) would otherwise be walked until paths grow too long, and two links to
  // one folder would count its photos twice. Links are followed only after every real path has
  // been walked, so a photo reached both ways keeps its own path.
  std::set<FileId> folders, files;
  std::vector<std::string> out;
  struct stat st {};
  const std::optional<FileId> root = file_id(dir, st);
  if (!root) throw Error(dir + ": cannot list (" + std::strerror(errno) + ")");
  folders.insert(*root);
  std::vector<fs::path> stack{fs::path(dir)}, linked_folders, linked_files;
  size_t next_link = 0;
  for (;;) {
    if (stack.empty()) {
      if (next_link == linked_folders.size()) break;
      const fs::path& link = linked_folders[next_link++];
      const std::optional<FileId> id = file_id(link, st);
      if (id && folders.insert(*id).second) stack.push_back(link);
      else if (id) warn(link.string() + ": a link to a folder already listed (a loop, or a second way in); not followed");
      continue;
    }
    const fs::path folder = stack.back();
    stack.pop_back();
    std::vector<fs::path> entries;
    for (auto it = fs::directory_iterator(folder, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      entries.push_back(it->path());
    if (ec) {
      if (folder == fs::path(dir)) throw Error(dir + ": cannot list (" + ec.message() + ")");
      warn(folder.string() + ": cannot read this folder (" + ec.message() + "); its photos are left out");
      ec.clear();
    }
    // Sorted, so what is kept of a file reached twice does not depend on the file system.
    std::sort(entries.begin(), entries.end());
    std::vector<fs::path> subfolders;
    for (const fs::path& p : entries) {
      const std::optional<FileId> id = file_id(p, st);
      if (!id) continue;
      const bool link = fs::is_symlink(p, ec);
      if (S_ISDIR(st.st_mode)) {
        if (link) linked_folders.push_back(p);
        else if (folders.insert(*id).second) subfolders.push_back(p);
      } else if (S_ISREG(st.st_mode) && is_image_name(p)) {
        if (link) linked_files.push_back(p);
        else if (files.insert(*id).second) out.push_back(p.string());
      }
    }
    for (auto it = subfolders.rbegin(); it != subfolders.rend(); ++it) stack.push_back(*it);
  }
  for (const fs::path& p : linked_files)
    if (const std::optional<FileId> id = file_id(p, st); id && files.insert(*id).second) out.push_back(p.string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> list_images(const std::string& dir) {
  std::vector<std::string> warnings;
  std::vector<std::string> out = list_images(dir, &warnings);
  // A few lines, then a count: a tree of many links must not bury the training log.
  for (size_t i = 0; i < warnings.size() && i < 5; ++i) std::cerr << "warning: " << warnings[i] << '\n';
  if (warnings.size() > 5) std::cerr << "warning: and " << warnings.size() - 5 << " more like these in " << dir << '\n';
  return out;
}

std::string file_stem(const std::string& path) { return fs::path(path).stem().string(); }

// ---- resampling

namespace {

struct Tap {
  int index;
  float weight;
};

// Per output index, the input taps: bilinear when enlarging, box (area) when shrinking.
std::vector<std::vector<Tap>> resample_taps(int in, int out) {
  std::vector<std::vector<Tap>> taps(static_cast<size_t>(out));
  const double scale = double(in) / double(out);
  for (int o = 0; o < out; ++o) {
    auto& t = taps[size_t(o)];
    if (scale <= 1.0) {
      const double src = (o + 0.5) * scale - 0.5;
      const int i0 = int(std::floor(src));
      const float f = float(src - i0);
      t.push_back({std::clamp(i0, 0, in - 1), 1.0f - f});
      t.push_back({std::clamp(i0 + 1, 0, in - 1), f});
    } else {
      const double a = o * scale, b = (o + 1) * scale;
      for (int i = int(std::floor(a)); i < int(std::ceil(b)) && i < in; ++i) {
        const double overlap = std::min(b, double(i + 1)) - std::max(a, double(i));
        if (overlap > 0) t.push_back({i, float(overlap / scale)});
      }
    }
  }
  return taps;
}

}  // namespace

ImageU8 resize_image(const ImageU8& img, int width, int height) {
  if (width <= 0 || height <= 0 || img.width <= 0 || img.height <= 0)
    throw Error("resize_image: from " + std::to_string(img.width) + "×" + std::to_string(img.height) + " to " +
                std::to_string(width) + "×" + std::to_string(height) + " (sizes must be positive)");
  if (width == img.width && height == img.height) return img;
  const auto tx = resample_taps(img.width, width), ty = resample_taps(img.height, height);
  // Horizontal pass into floats, then vertical pass with rounding back to 8 bits.
  std::vector<float> mid(size_t(img.height) * size_t(width) * 3);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        float s = 0;
        for (const Tap& t : tx[size_t(x)]) s += t.weight * img.rgb[(size_t(y) * img.width + t.index) * 3 + c];
        mid[(size_t(y) * width + x) * 3 + c] = s;
      }
  ImageU8 out;
  out.width = width, out.height = height, out.channels_in_file = img.channels_in_file;
  out.rgb.resize(size_t(width) * size_t(height) * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) {
        float s = 0;
        for (const Tap& t : ty[size_t(y)]) s += t.weight * mid[(size_t(t.index) * width + x) * 3 + c];
        out.rgb[(size_t(y) * width + x) * 3 + c] = uint8_t(std::clamp(std::lround(s), 0L, 255L));
      }
  return out;
}

ImageU8 cut_image(const ImageU8& img, int x0, int y0, int width, int height) {
  if (x0 < 0 || y0 < 0 || width <= 0 || height <= 0 || x0 + width > img.width || y0 + height > img.height)
    throw Error("cut_image: " + std::to_string(width) + "×" + std::to_string(height) + " at (" +
                std::to_string(x0) + ", " + std::to_string(y0) + ") does not fit a " + std::to_string(img.width) +
                "×" + std::to_string(img.height) + " image");
  ImageU8 out;
  out.width = width, out.height = height, out.channels_in_file = img.channels_in_file;
  out.rgb.resize(size_t(width) * size_t(height) * 3);
  for (int y = 0; y < height; ++y)
    std::copy_n(&img.rgb[(size_t(y0 + y) * size_t(img.width) + size_t(x0)) * 3], size_t(width) * 3,
                &out.rgb[size_t(y) * size_t(width) * 3]);
  return out;
}

const ImageU8& fit_for_crop(const ImageU8& photo, int size, int64_t max_short_side, std::mt19937_64& rng,
                            ImageU8& storage) {
  const ImageU8* src = &photo;
  // An extreme aspect ratio is cut to a window of at most kMaxAspectRatio : 1 first, so an
  // 8192×2 photo becomes an 8×2 window enlarged to the crop, not a million-pixel-wide strip.
  if (std::max(src->width, src->height) > kMaxAspectRatio * std::min(src->width, src->height)) {
    const int w = std::min(src->width, kMaxAspectRatio * src->height);
    const int h = std::min(src->height, kMaxAspectRatio * src->width);
    storage = cut_image(*src, std::uniform_int_distribution<int>(0, src->width - w)(rng),
                        std::uniform_int_distribution<int>(0, src->height - h)(rng), w, h);
    src = &storage;
  }
  const int short_side = std::min(src->width, src->height);
  double target_short = short_side;
  if (short_side < size)
    target_short = size;  // enlarge small photos so a crop fits
  else if (max_short_side > 0 && short_side > size)
    target_short = std::uniform_real_distribution<double>(
        double(size), double(std::max<int64_t>(size, std::min<int64_t>(short_side, max_short_side))))(rng);
  if (int(std::lround(target_short)) != short_side) {
    const double f = target_short / short_side;
    ImageU8 resized = resize_image(*src, std::max(size, int(std::lround(src->width * f))),
                                   std::max(size, int(std::lround(src->height * f))));
    storage = std::move(resized);
    src = &storage;
  }
  return *src;
}

Tensor crop_to_tensor(const ImageU8& img, int x0, int y0, int size, bool flip) {
  if (x0 < 0 || y0 < 0 || size <= 0 || x0 + size > img.width || y0 + size > img.height)
    throw Error("crop_to_tensor: crop of " + std::to_string(size) + " at (" + std::to_string(x0) + ", " +
                std::to_string(y0) + ") does not fit a " + std::to_string(img.width) + "×" +
                std::to_string(img.height) + " image");
  Tensor t = Tensor::empty({3, size, size});
  float* out = t.data<float>();
  const size_t plane = size_t(size) * size_t(size);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const int sx = x0 + (flip ? size - 1 - x : x);
      const uint8_t* p = &img.rgb[(size_t(y0 + y) * img.width + sx) * 3];
      for (int c = 0; c < 3; ++c) out[c * plane + size_t(y) * size + x] = float(p[c]) / 255.0f;
    }
  return t;
}

// ---- state

std::string DatasetState::to_string() const {
  return "seed=" + std::to_string(seed) + " epoch=" + std::to_string(epoch) + " position=" + std::to_string(position);
}

DatasetState DatasetState::parse(const std::string& s) {
  DatasetState st;
  std::istringstream in(s);
  std::string seed, epoch, position, rest;
  auto value = [&](const std::string& field, const char* key) -> std::string {
    const std::string prefix = std::string(key) + "=";
    if (field.rfind(prefix, 0) != 0 || field.size() == prefix.size() ||
        field.find_first_not_of("0123456789", prefix.size()) != std::string::npos)
      throw Error("dataset state: '" + s + "' is not of the form 'seed=S epoch=E position=P'");
    return field.substr(prefix.size());
  };
  in >> seed >> epoch >> position;
  if (in >> rest) throw Error("dataset state: '" + s + "' has extra text '" + rest + "'");
  try {
    st.seed = std::stoull(value(seed, "seed"));
    st.epoch = std::stoll(value(epoch, "epoch"));
    st.position = std::stoll(value(position, "position"));
  } catch (const std::out_of_range&) {
    throw Error("dataset state: '" + s + "' has a number out of range");
  }
  return st;
}

// ---- training stream

TrainingData::TrainingData(DatasetOptions options, DatasetState start) : opt_(std::move(options)) {
  if (opt_.size <= 0 || opt_.batch <= 0)
    throw Error("TrainingData: size " + std::to_string(opt_.size) + " and batch " + std::to_string(opt_.batch) +
                " must be positive");
  if (opt_.shards < 1 || opt_.shard < 0 || opt_.shard >= opt_.shards || opt_.batch % opt_.shards != 0)
    throw Error("TrainingData: share " + std::to_string(opt_.shard) + " of " + std::to_string(opt_.shards) +
                " of a batch of " + std::to_string(opt_.batch) + " (the batch must be a multiple of the shares)");
  files_ = list_images(opt_.image_dir);
  if (files_.empty()) throw Error(opt_.image_dir + ": no images (jpg, jpeg, png, bmp, tga, gif, webp) in this folder");
  if (!opt_.mask_dir.empty()) {
    mask_files_ = list_images(opt_.mask_dir);
    if (mask_files_.empty()) throw Error(opt_.mask_dir + ": no mask images in this folder");
    for (const std::string& f : mask_files_) mask_cache_.push_back(load_mask(f, opt_.mask_holes).mask);
  }
  if (start.seed != opt_.seed && (start.epoch != 0 || start.position != 0))
    throw Error("TrainingData: state " + start.to_string() + " belongs to another seed than " +
                std::to_string(opt_.seed));
  start.seed = opt_.seed;
  state_ = start;
  start_worker(start);
}

TrainingData::~TrainingData() { stop_worker(); }

std::vector<int64_t> TrainingData::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(files_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  std::mt19937_64 rng(mix_seed(opt_.seed, uint64_t(epoch), 0x6f72646572));  // "order"
  // Fisher–Yates with our own index draws: std::shuffle's algorithm is unspecified.
  for (size_t i = order.size(); i > 1; --i) {
    const size_t j = size_t(rng() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

int64_t TrainingData::unreadable_count() {
  std::lock_guard<std::mutex> lock(mu_);
  return int64_t(bad_files_.size());
}

std::shared_ptr<const ImageU8> TrainingData::try_read(int64_t file) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (bad_files_.count(file)) return nullptr;
    if (auto it = cache_.find(file); it != cache_.end()) return it->second;
  }
  try {
    auto img = std::make_shared<const ImageU8>(read_image_u8(files_[size_t(file)]));
    const int64_t bytes = int64_t(img->rgb.size());
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_bytes_ + bytes <= opt_.cache_bytes && cache_.emplace(file, img).second) cached_bytes_ += bytes;
    return img;
  } catch (const Error& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!bad_files_.insert(file).second) return nullptr;
    const size_t bad = bad_files_.size(), all = files_.size();
    const std::string count = std::to_string(bad) + " of " + std::to_string(all);
    // A few broken downloads should not stop a week-long run; a folder of them should.
    if (2 * bad > all)
      throw Error(opt_.image_dir + ": " + count + " training photos could not be read, more than half: stopping (the last: " +
                  e.what() + ")");
    std::cerr << "warning: skipping unreadable training photo (" << count << " so far): " << e.what() << '\n';
    return nullptr;
  }
}

void TrainingData::sample(int64_t epoch, int64_t position, Tensor& image, MaskImage& mask) {
  const std::vector<int64_t> order = epoch_order(epoch);
  const int64_t n = int64_t(order.size());
  std::mt19937_64 rng(mix_seed(opt_.seed, uint64_t(epoch), uint64_t(position)));
  std::shared_ptr<const ImageU8> photo;
  for (int64_t k = 0; k < n && !photo; ++k) photo = try_read(order[size_t((position + k) % n)]);
  if (!photo)
    throw Error(opt_.image_dir + ": none of the " + std::to_string(n) + " images could be read");
  const int size = int(opt_.size);
  ImageU8 storage;
  const ImageU8* src = &fit_for_crop(*photo, size, opt_.max_short_side, rng, storage);
  const int x = std::uniform_int_distribution<int>(0, src->width - size)(rng);
  const int y = std::uniform_int_distribution<int>(0, src->height - size)(rng);
  const bool flip = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  image = crop_to_tensor(*src, x, y, size, opt_.flip && flip);
  if (mask_cache_.empty()) {
    const double target = std::uniform_real_distribution<double>(opt_.generator.min_hole_ratio,
                                                                 opt_.generator.max_hole_ratio)(rng);
    mask = generate_mask(size, size, target, rng);
  } else {
    const size_t m = size_t(std::uniform_int_distribution<int64_t>(0, int64_t(mask_cache_.size()) - 1)(rng));
    mask = augment_mask(mask_cache_[m], size, size, rng, opt_.augment);
  }
}

Batch TrainingData::make_batch(DatasetState& cursor) {
  const int64_t n = opt_.batch / opt_.shards, s = opt_.size, per_epoch = samples_per_epoch();
  Batch b;
  b.images = Tensor::empty({n, 3, s, s});
  if (opt_.harmonic_fill) b.fill = Tensor::empty({n, 3, s, s});
  std::vector<MaskImage> masks(static_cast<size_t>(n));
  // (epoch, position) of every sample of the whole batch; this process makes its share.
  std::vector<std::pair<int64_t, int64_t>> all(static_cast<size_t>(opt_.batch));
  for (auto& w : all) {
    w = {cursor.epoch, cursor.position};
    if (++cursor.position == per_epoch) cursor.position = 0, ++cursor.epoch;
  }
  const std::vector<std::pair<int64_t, int64_t>> where(all.begin() + std::ptrdiff_t(opt_.shard * n),
                                                       all.begin() + std::ptrdiff_t((opt_.shard + 1) * n));
  // Samples are pure functions of (seed, epoch, position), so any thread may make any of them.
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&] {
    for (int64_t i; (i = next++) < n;) {
      try {
        Tensor img;
        sample(where[size_t(i)].first, where[size_t(i)].second, img, masks[size_t(i)]);
        std::copy_n(img.data<float>(), 3 * s * s, b.images.data<float>() + i * 3 * s * s);
        if (opt_.harmonic_fill) network_fill(img, masks[size_t(i)], b.fill.data<float>() + i * 3 * s * s);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> helpers;
  for (int64_t t = 1; t < std::min<int64_t>(opt_.workers, n); ++t) helpers.emplace_back(work);
  work();
  for (std::thread& t : helpers) t.join();
  if (error) std::rethrow_exception(error);
  b.masks = masks_to_batch(masks);
  b.next = cursor;
  return b;
}

void TrainingData::worker(DatasetState cursor) {
  try {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || int(queue_.size()) < std::max(1, opt_.prefetch); });
        if (stop_) return;
      }
      Batch b = make_batch(cursor);
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      queue_.push_back(std::move(b));
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

void TrainingData::start_worker(DatasetState from) {
  stop_ = false;
  error_ = nullptr;
  queue_.clear();
  thread_ = std::thread(&TrainingData::worker, this, from);
}

void TrainingData::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

Batch TrainingData::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || error_; });
  if (queue_.empty()) std::rethrow_exception(error_);
  Batch b = std::move(queue_.front());
  queue_.pop_front();
  state_ = b.next;
  cv_.notify_all();
  return b;
}

void TrainingData::restore(const DatasetState& s) {
  if (s.seed != opt_.seed)
    throw Error("TrainingData::restore: state " + s.to_string() + " belongs to another seed than " +
                std::to_string(opt_.seed));
  if (s.epoch < 0 || s.position < 0 || s.position >= samples_per_epoch())
    throw Error("TrainingData::restore: state " + s.to_string() + " is outside an epoch of " +
                std::to_string(samples_per_epoch()) + " samples");
  stop_worker();
  state_ = s;
  start_worker(s);
}

// ---- validation

std::vector<ValidationSample> make_validation_set(const std::string& image_dir, int64_t size, uint64_t seed,
                                                  const std::string& mask_dir, MaskHoles mask_holes) {
  if (size <= 0) throw Error("make_validation_set: size " + std::to_string(size) + " must be positive");
  const std::vector<std::string> files = list_images(image_dir);
  if (files.empty()) throw Error(image_dir + ": no images (jpg, jpeg, png, bmp, tga, gif, webp) in this folder");
  std::vector<std::string> mask_files;
  if (!mask_dir.empty()) {
    mask_files = list_images(mask_dir);
    if (mask_files.empty()) throw Error(mask_dir + ": no mask images in this folder");
  }
  static constexpr double kEdges[7] = {0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
  std::vector<ValidationSample> out;
  for (size_t i = 0; i < files.size(); ++i) {
    ImageU8 img = read_image_u8(files[i]);
    if (std::max(img.width, img.height) > kMaxAspectRatio * std::min(img.width, img.height)) {
      const int w = std::min(img.width, kMaxAspectRatio * img.height);
      const int h = std::min(img.height, kMaxAspectRatio * img.width);
      img = cut_image(img, (img.width - w) / 2, (img.height - h) / 2, w, h);
    }
    const double f = double(size) / std::min(img.width, img.height);
    img = resize_image(img, std::max(int(size), int(std::lround(img.width * f))),
                       std::max(int(size), int(std::lround(img.height * f))));
    ValidationSample s;
    s.name = file_stem(files[i]);
    s.image = crop_to_tensor(img, (img.width - int(size)) / 2, (img.height - int(size)) / 2, int(size), false);
    if (!mask_files.empty()) {
      const MaskImage m = load_mask(mask_files[i % mask_files.size()], mask_holes).mask;
      s.mask = (m.height == size && m.width == size) ? m : resize_nearest(m, size, size);
    } else {
      const size_t b = i % 6;
      std::mt19937_64 rng(mix_seed(seed, i, 0x76616c));  // "val"
      s.mask = generate_mask(size, size, (kEdges[b] + kEdges[b + 1]) / 2, rng);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace pconv
