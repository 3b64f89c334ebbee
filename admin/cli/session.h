// What a running command works with: the global flags, the output, and the connection, opened
// on first use so that `--help` and usage errors never touch the token or certificate files.
//
// Thread rule: one thread.

#pragma once

#include <memory>
#include <string>
#include <vector>

#include "admin/cli/connection.h"
#include "admin/cli/errors.h"
#include "admin/cli/output.h"

namespace evgate::admin::cli {

// The flags before or after any command.
struct GlobalOptions {
  ConnectionOptions connection;  // its address: the one gateway a session talks to
  // --address as given (repeated, or comma-separated in EVGATE_ADDRESS); more than one, or
  // --fanout, makes the command a fleet command (fleet.h).
  std::vector<std::string> addresses{"127.0.0.1:9901"};
  bool fanout = false;
  std::string timeout = "10s";  // text; becomes connection.timeout
  std::string output = "table";
};

class Session {
 public:
  template <typename Request, typename Response>
  using Method = grpc::Status (v1::Admin::Stub::*)(grpc::ClientContext*, const Request&, Response*);

  // `options` must outlive the session.
  Session(const GlobalOptions& options, Output& output);

  Output& out() { return output_; }
  Connection& connection();

  // One unary call with the deadline of --timeout; throws RpcError unless it succeeds.
  template <typename Request, typename Response>
  void call(Method<Request, Response> method, const Request& request, Response* response) {
    Connection& c = connection();
    const auto context = c.unaryContext();
    grpc::Status status = (c.stub().*method)(context.get(), request, response);
    if (!status.ok()) throw RpcError(std::move(status));
  }

  // In table mode, says on stderr that a --dry-run request changed nothing (stdout keeps the
  // gateway's answer, as it would be).
  void noteDryRun(bool dryRun) const;

 private:
  const GlobalOptions& options_;
  Output& output_;
  std::unique_ptr<Connection> connection_;
};

}  // namespace evgate::admin::cli
