// The flow filter flags shared by `flow list`, `flow close-all` and `event create --action
// close-flows`: --listener --cluster --endpoint --client --min-age --min-idle.

#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "evgate/admin/v1/admin.pb.h"

namespace evgate::admin::cli {

struct FlowFilterFlags {
  std::string listener;
  std::string cluster;
  std::string endpoint;
  std::string client;
  std::string minAge;
  std::string minIdle;

  // Adds the flags to `command`; this object must outlive it.
  void addTo(CLI::App* command);
  // The filter the given flags describe; flags not given leave their field unset.
  v1::FlowFilter toFilter() const;
};

}  // namespace evgate::admin::cli
