// The two ways a command fails, thrown from anywhere inside it and turned into an exit code in
// main (DESIGN.md, "The CLI"): a usage error (exit 2) and an error answer from the gateway or
// the channel (exit 1 or 3, see Connection::report).

#pragma once

#include <grpcpp/support/status.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace evgate::admin::cli {

// The command line asks for something that cannot be sent: a bad value, a missing flag, an
// unreadable token or certificate file. The message names the flag or file.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

// A call ended with a status other than OK.
class RpcError : public std::runtime_error {
 public:
  explicit RpcError(grpc::Status status)
      : std::runtime_error(status.error_message()), status_(std::move(status)) {}
  const grpc::Status& status() const { return status_; }

 private:
  grpc::Status status_;
};

}  // namespace evgate::admin::cli
