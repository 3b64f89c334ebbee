// The channel to one gateway's admin API: address, TLS credentials, the bearer token, per-call
// deadlines, and what a failed call means for the exit code.
//
// Thread rule: one thread (the CLI's main thread).

#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <string>

#include "admin/status_code_name.h"
#include "evgate/admin/v1/admin.grpc.pb.h"

namespace evgate::admin::cli {

struct ConnectionOptions {
  std::string address;    // HOST:PORT, or any gRPC target
  std::string tokenFile;  // empty: no token
  std::string tlsCa;      // empty: plaintext
  std::string tlsCert;    // client certificate for mTLS (needs tlsKey)
  std::string tlsKey;
  std::chrono::nanoseconds timeout{std::chrono::seconds(10)};  // per unary call
};

class Connection {
 public:
  // Reads the token and certificate files; throws UsageError when one cannot be read or the TLS
  // flags do not fit together. Does not connect: the first call does.
  explicit Connection(const ConnectionOptions& options);

  v1::Admin::Stub& stub() { return *stub_; }

  // A context for one unary call: the token, and the deadline `timeout` from now.
  std::unique_ptr<grpc::ClientContext> unaryContext() const;
  // A context for a stream (Watch, CloseFlows): the token, no deadline.
  std::unique_ptr<grpc::ClientContext> streamContext() const;

  // Prints a failed call's status on stderr and returns the exit code: 3 when the gateway
  // cannot be reached (UNAVAILABLE, or a deadline passed before the channel ever connected),
  // otherwise 1.
  int report(const grpc::Status& status, std::ostream& err) const;

 private:
  std::string address_;
  std::string token_;
  std::chrono::nanoseconds timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

}  // namespace evgate::admin::cli
