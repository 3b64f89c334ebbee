#pragma once

// A directory laid out the way the kubelet lays out a ConfigMap volume, and updated the same way:
//
//   DIR/..2026_11_27_06_00_00.000000001/evgate.yaml     the files of one version
//   DIR/..data -> ..2026_11_27_06_00_00.000000001        swapped by rename(2) on each update
//   DIR/evgate.yaml -> ..data/evgate.yaml                what the program opens
//
// publish() writes a new version directory, points a fresh `..data_tmp` symlink at it, renames
// it over `..data` (atomic), then removes the old version: the steps the kubelet's AtomicWriter
// takes.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace evgate::test {

class ConfigMapDir {
 public:
  ConfigMapDir(std::filesystem::path dir, std::string fileName)
      : dir_(std::move(dir)), fileName_(std::move(fileName)) {}

  // The path the program is given.
  std::string path() const { return (dir_ / fileName_).string(); }

  // Publishes `text` as the next version; false if a step failed.
  bool publish(const std::string& text) {
    const std::string version = "..version_" + std::to_string(++versions_);
    std::filesystem::create_directory(dir_ / version);
    std::ofstream(dir_ / version / fileName_) << text;
    const std::filesystem::path temporary = dir_ / "..data_tmp";
    std::filesystem::remove(temporary);
    if (::symlink(version.c_str(), temporary.c_str()) != 0) return false;
    if (::rename(temporary.c_str(), (dir_ / "..data").c_str()) != 0) return false;
    const std::filesystem::path link = dir_ / fileName_;
    if (!std::filesystem::is_symlink(link)) {
      std::filesystem::create_symlink(std::filesystem::path("..data") / fileName_, link);
    }
    if (!current_.empty()) std::filesystem::remove_all(dir_ / current_);
    current_ = version;
    return true;
  }

 private:
  const std::filesystem::path dir_;
  const std::string fileName_;
  std::string current_;
  int versions_ = 0;
};

}  // namespace evgate::test
