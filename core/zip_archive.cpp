#include "core/zip_archive.h"

#include "core/dtype.h"

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
};

ZipArchive::ZipArchive(const std::string& path) : impl_(std::make_unique<Impl>()) {
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

std::string ZipArchive::read(const std::string& name, int64_t expected) const {
  zip_t* zip = impl_->zip;
  const zip_int64_t index = zip_name_locate(zip, name.c_str(), 0);
  if (index < 0) throw Error("the zip archive has no entry " + name);
  zip_stat_t st;
  if (zip_stat_index(zip, zip_uint64_t(index), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
    throw Error("cannot read the size of zip entry " + name);
  if (expected >= 0 && st.size != uint64_t(expected))
    throw Error("zip entry " + name + " holds " + std::to_string(st.size) + " bytes, " + std::to_string(expected) +
                " expected");
  if (st.size > (uint64_t(1) << 40)) throw Error("zip entry " + name + " is over 1 TiB");
  zip_file_t* f = zip_fopen_index(zip, zip_uint64_t(index), 0);
  if (!f) throw Error("cannot open zip entry " + name + ": " + zip_strerror(zip));
  std::string out(size_t(st.size), '\0');
  zip_int64_t got = zip_fread(f, out.data(), st.size);
  // libzip checks the entry's CRC when a read reaches its end: one more read makes sure it did.
  char past_end;
  if (got >= 0 && zip_fread(f, &past_end, 1) != 0) got = -1;
  const std::string reason = got < 0 ? zip_file_strerror(f) : "";
  zip_fclose(f);
  if (got < 0 || uint64_t(got) != st.size)
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
std::string ZipArchive::read(const std::string&, int64_t) const { return {}; }

#endif

}  // namespace pconv
