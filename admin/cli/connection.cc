#include "admin/cli/connection.h"

#include <cctype>
#include <cerrno>
#include <fstream>
#include <iostream>
#include <iterator>
#include <system_error>

#include "admin/cli/errors.h"

namespace evgate::admin::cli {
namespace {

std::string readFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UsageError("cannot read " + std::string(what) + " " + path + ": " +
                     std::generic_category().message(errno));
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A token file written by `echo` ends in a newline that is not part of the token.
std::string readToken(const std::string& path) {
  std::string token = readFile(path, "token file");
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
    token.pop_back();
  }
  if (token.empty()) throw UsageError("token file " + path + " is empty");
  return token;
}

std::shared_ptr<grpc::ChannelCredentials> credentials(const ConnectionOptions& options) {
  const bool clientCert = !options.tlsCert.empty() || !options.tlsKey.empty();
  if (options.tlsCa.empty()) {
    if (clientCert) throw UsageError("--tls-cert and --tls-key need --tls-ca");
    return grpc::InsecureChannelCredentials();
  }
  if (clientCert && (options.tlsCert.empty() || options.tlsKey.empty())) {
    throw UsageError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = readFile(options.tlsCa, "CA file");
  if (clientCert) {
    ssl.pem_cert_chain = readFile(options.tlsCert, "certificate file");
    ssl.pem_private_key = readFile(options.tlsKey, "key file");
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

Connection::Connection(const ConnectionOptions& options)
    : address_(options.address), timeout_(options.timeout) {
  if (!options.tokenFile.empty()) token_ = readToken(options.tokenFile);
  channel_ = grpc::CreateChannel(address_, credentials(options));
  stub_ = v1::Admin::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Connection::streamContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  // Plain metadata rather than call credentials: gRPC refuses call credentials on a plaintext
  // channel, and the admin API allows a token without TLS on loopback.
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  return context;
}

std::unique_ptr<grpc::ClientContext> Connection::unaryContext() const {
  auto context = streamContext();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(timeout_));
  return context;
}

int Connection::report(const grpc::Status& status, std::ostream& err) const {
  // A deadline that passes on a channel that never became ready is a gateway that is not there
  // (a blackholed address); on a ready channel it is a slow answer, which the gateway gave.
  const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
                            channel_->GetState(false) != GRPC_CHANNEL_READY);
  if (unreachable) {
    err << "error: cannot reach the gateway at " << address_ << ": " << status.error_message()
        << '\n';
    return 3;
  }
  err << "error: " << statusCodeName(status.error_code()) << ": " << status.error_message() << '\n';
  return 1;
}

}  // namespace evgate::admin::cli
