#include "core/io/zip_archive.h"

#include <sys/stat.h>

#include <algorithm>

#include "core/dtype.h"
#include "core/available_memory.h"

#if PCONV_HAVE_LIBZIP
#include <zip.h>
#endif

namespace pconv {

#if PCONV_HAVE_LIBZIP

bool zip_supported() { return true; }

namespace {

std::string zip_reason(int code) {
  zip_error_t e;
  zip_error_init_with_code(&e, code);
  std::string s = zip_error_strerror(&e);
  zip_error_fini(&e);
  return s;
}

}  // namespace

struct ZipArchive::Impl {
  zip_t* zip = nullptr;
  uint64_t file_size = 0;
};

ZipArchive::ZipArchive(const std::string& path) : impl_(std::make_unique<Impl>()) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) impl_->file_size = uint64_t(st.st_size);
  int code = 0;
  impl_->zip = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!impl_->zip) throw Error("a zip archive that is truncated or corrupt (" + zip_reason(code) + ")");
}

ZipArchive::~ZipArchive() { zip_discard(impl_->zip); }

std::vector<std::string> ZipArchive::names() const {
  std::vector<std::string> out;
  const zip_int64_t n = zip_get_num_entries(impl_->zip, 0);
  for (zip_int64_t i = 0; i < n; ++i)
    if (const char* name = zip_get_name(impl_->zip, zip_uint64_t(i), 0)) out.emplace_back(name);
  return out;
}

bool ZipArchive::has(const std::string& name) const { return zip_name_locate(impl_->zip, name.c_str(), 0) >= 0; }

std::string ZipArchive::read(const std::string& name, int64_t expected, int64_t max_bytes) const {
  zip_t* zip = impl_->zip;
  const zip_int64_t index = zip_name_locate(zip, name.c_str(), 0);
  if (index < 0) throw Error("the zip archive has no entry " + name);
  zip_stat_t st;
  const zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
  if (zip_stat_index(zip, zip_uint64_t(index), 0, &st) != 0 || (st.valid & need) != need)
    throw Error("cannot read the size of zip entry " + name);
  if (expected >= 0 && st.size != uint64_t(expected))
    throw Error("zip entry " + name + " holds " + std::to_string(st.size) + " bytes, " + std::to_string(expected) +
                " expected");
  // What the entry's bytes in the file can hold, before anything is allocated.
  if (st.comp_size > impl_->file_size)
    throw Error("zip entry " + name + " claims " + std::to_string(st.comp_size) + " compressed bytes in a file of " +
                std::to_string(impl_->file_size));
  if (st.comp_method == ZIP_CM_STORE) {
    if (st.size != st.comp_size)
      throw Error("zip entry " + name + " is stored uncompressed in " + std::to_string(st.comp_size) +
                  " bytes but claims " + std::to_string(st.size));
  } else if (st.comp_method == ZIP_CM_DEFLATE) {
    if (st.size / uint64_t(kMaxDeflateRatio) > st.comp_size)
      throw Error("zip entry " + name + " claims " + std::to_string(st.size) + " bytes from " +
                  std::to_string(st.comp_size) + " deflated ones, more than deflate can expand (" +
                  std::to_string(kMaxDeflateRatio) + "×): a zip bomb or a corrupt file");
  } else {
    throw Error("zip entry " + name + " uses compression method " + std::to_string(st.comp_method) +
                " (PyTorch stores entries uncompressed; deflate is read too)");
  }
  if (max_bytes >= 0 && st.size > uint64_t(max_bytes))
    throw Error("zip entry " + name + " is " + format_bytes(int64_t(st.size)) + ", over the " +
                format_bytes(max_bytes) + " allowed for it");
  const int64_t budget = available_memory_bytes();
  if (budget >= 0 && st.size > uint64_t(budget))
    throw Error("zip entry " + name + " is " + format_bytes(int64_t(st.size)) + " and this process has " +
                format_bytes(budget) + " of memory available");

  zip_file_t* f = zip_fopen_index(zip, zip_uint64_t(index), 0);
  if (!f) throw Error("cannot open zip entry " + name + ": " + zip_strerror(zip));
  // A chunk at a time, one byte past the declared size: more data than declared ends the read
  // there. Reaching the end also makes libzip check the entry's CRC.
  std::string out;
  out.reserve(size_t(st.size));
  std::vector<char> chunk(size_t(64) << 10);
  std::string reason;
  bool failed = false;
  for (;;) {
    const uint64_t room = st.size + 1 - out.size();
    const zip_int64_t got = zip_fread(f, chunk.data(), std::min<uint64_t>(chunk.size(), room));
    if (got < 0) {
      failed = true;
      reason = zip_file_strerror(f);
      break;
    }
    if (got == 0) break;
    if (uint64_t(got) > st.size - out.size()) {
      reason = "it inflates to more than the " + std::to_string(st.size) + " bytes it declares";
      failed = true;
      break;
    }
    out.append(chunk.data(), size_t(got));
  }
  zip_fclose(f);
  if (failed || out.size() != st.size)
    throw Error("zip entry " + name + " is truncated or corrupt" + (reason.empty() ? "" : " (" + reason + ")"));
  return out;
}

#else  // built without libzip

bool zip_supported() { return false; }

struct ZipArchive::Impl {};

ZipArchive::ZipArchive(const std::string&) {
  throw Error("a zip-format checkpoint, and this pconv was built without libzip (install the Debian package "
              "libzip-dev and configure again), or re-save it with torch.save(..., "
              "_use_new_zipfile_serialization=False)");
}
ZipArchive::~ZipArchive() = default;
std::vector<std::string> ZipArchive::names() const { return {}; }
bool ZipArchive::has(const std::string&) const { return false; }
std::string ZipArchive::read(const std::string&, int64_t, int64_t) const { return {}; }

#endif

}  // namespace pconv
