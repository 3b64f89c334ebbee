#include "admin/cli/table.h"

#include <algorithm>

namespace evgate::admin::cli {

Table::Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void Table::addRow(std::vector<std::string> cells) {
  cells.resize(rows_.front().size());
  rows_.push_back(std::move(cells));
}

void Table::print(std::ostream& out) const {
  std::vector<size_t> widths(rows_.front().size(), 0);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  }
}

void KeyValues::add(std::string key, std::string value) {
  lines_.emplace_back(std::move(key), std::move(value));
}

void KeyValues::print(std::ostream& out) const {
  size_t width = 0;
  for (const auto& [key, value] : lines_) width = std::max(width, key.size());
  for (const auto& [key, value] : lines_) {
    out << key << ':' << std::string(width - key.size() + 1, ' ') << value << '\n';
  }
}

}  // namespace evgate::admin::cli
