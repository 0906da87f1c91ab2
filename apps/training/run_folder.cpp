#include "apps/training/run_folder.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/dtype.h"
#include "core/io/safetensors.h"

namespace pconv {

namespace fs = std::filesystem;

namespace training {

std::string step_file(int64_t step, const std::string& ext) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld.%s", static_cast<long long>(step), ext.c_str());
  return buf;
}

int64_t checkpoint_step(const fs::path& p) {
  const std::string name = p.filename().string(), prefix = "step-", suffix = ".safetensors";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  int64_t step = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  if (ec != std::errc() || end != digits.data() + digits.size() || step < 0) return -1;  // "step-x", 30 digits
  return step;
}

std::vector<std::string> checkpoint_entries(const std::string& out_dir, bool files_only) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  const fs::path dir = fs::path(out_dir) / "checkpoints";
  if (fs::is_directory(dir, ec))
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (const int64_t s = checkpoint_step(entry.path()); s >= 0 && (!files_only || entry.is_regular_file(ec)))
        found.emplace_back(s, entry.path().string());
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& [s, p] : found) paths.push_back(p);
  return paths;
}

std::string run_folder_of(const std::string& resume) {
  std::error_code ec;
  fs::path p = resume;
  if (!fs::is_directory(p, ec)) {
    p = p.parent_path();
    if (p.filename() != "checkpoints") return "";
  }
  if (p.filename() == "checkpoints") p = p.parent_path();
  return p.empty() ? std::string(".") : p.string();
}

namespace {
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  for (std::string field; std::getline(ss, field, ',');) out.push_back(field);
  return out;
}
}  // namespace

std::vector<std::vector<double>> truncate_log(const std::string& path, const char* header, const char* legacy,
                                              int64_t step) {
  std::vector<std::vector<double>> rows;
  std::ifstream in(path);
  std::string text = std::string(header) + "\n", line;
  const size_t columns = split_csv(header).size();
  if (in && std::getline(in, line) && (line == header || line == legacy)) {
    const size_t have = split_csv(line).size();
    while (std::getline(in, line)) {
      std::vector<double> row;
      try {
        for (const std::string& f : split_csv(line)) row.push_back(std::stod(f));
      } catch (const std::exception&) {
        break;  // a torn last line from a killed run
      }
      if (row.empty() || row.size() != have || row[0] > double(step)) break;
      for (size_t c = have; c < columns; ++c) row.push_back(0), line += ",0";
      rows.push_back(row);
      text += line + "\n";
    }
  }
  write_file_atomic(path, text);
  return rows;
}

void append_line(const std::string& path, const std::string& line) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) throw Error(path + ": cannot open for appending");
  const bool ok = std::fputs((line + "\n").c_str(), f) >= 0;
  if (std::fclose(f) != 0 || !ok) throw Error(path + ": write failed (disk full?)");
}

void remove_stale_temp_files(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const auto at = name.rfind(".tmp-");
    if (at == std::string::npos || at + 5 == name.size()) continue;
    long pid = 0;
    const auto [end, err] = std::from_chars(name.data() + at + 5, name.data() + name.size(), pid);
    if (err != std::errc() || end != name.data() + name.size() || pid <= 0) continue;
    if (pid == long(::getpid()) || (::kill(pid_t(pid), 0) == 0 || errno == EPERM)) continue;  // a live writer
    fs::remove(entry.path(), ec);
  }
}

}  // namespace training

std::vector<std::string> list_checkpoints(const std::string& out_dir) { return training::checkpoint_entries(out_dir, true); }

std::string resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path + ": no such checkpoint");
  if (!fs::is_directory(path, ec)) return path;
  fs::path run = path;
  if (run.filename() == "checkpoints") run = run.parent_path();
  const auto all = list_checkpoints(run.string());
  if (all.empty()) throw Error(path + ": no checkpoints (checkpoints/step-*.safetensors) in this folder");
  return all.back();
}

}  // namespace pconv
