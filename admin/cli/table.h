// Text layout for `-o table`: columns aligned under a header row, and "key: value" lines with
// the values aligned.

#pragma once

#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace evgate::admin::cli {

// Rows of cells under a header; each column as wide as its widest cell, two spaces apart.
class Table {
 public:
  explicit Table(std::vector<std::string> header);

  // A row with one cell per header column (missing cells print empty).
  void addRow(std::vector<std::string> cells);
  // The header and every row; the last column is not padded.
  void print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
};

// "key: value" lines, the values starting in one column.
class KeyValues {
 public:
  void add(std::string key, std::string value);
  void print(std::ostream& out) const;

 private:
  std::vector<std::pair<std::string, std::string>> lines_;
};

}  // namespace evgate::admin::cli
