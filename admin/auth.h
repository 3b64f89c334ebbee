#pragma once

// Who may call the admin API: bearer tokens, TLS and mutual TLS, and the two roles.
//
//   configured                     caller needs                   role
//   nothing                        nothing                        admin, "local"
//   token_file (+ read-only)       one of the tokens              by the token
//   tls.client_ca_file only        a cert signed by that CA       admin, "cert:<subject>"
//   client CA and tokens           both (the handshake checks     by the token
//                                  the cert, the token the role)
//
// TLS without a client CA only encrypts; it adds no identity.

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/config/config.h"

namespace evgate::admin {

enum class Role {
  kReader,  // GetStatus, Get*, List*, Watch
  kAdmin,   // everything
};

// "reader" or "admin".
const char* toString(Role role);

// The authenticated caller of one RPC.
struct Caller {
  Role role = Role::kReader;
  // Who called, for the audit log; never a secret: "admin-token", "read-only-token",
  // "cert:<subject>", "admin-token+cert:<subject>" (token and mTLS), "local" (no credentials
  // configured), or "unauthenticated" after a failed authenticate().
  std::string identity;
};

// Checks the credentials of admin RPCs against the configuration.
//
// Thread rule: immutable once created; every method is safe from any thread (the gRPC server
// calls authenticate() from its handler threads concurrently).
class Authenticator {
 public:
  // Reads the token files and, with TLS, the certificate, key and CA files named by `config`,
  // and checks that they make sense (a key matching its certificate, tokens of printable ASCII,
  // two different tokens, credentials on a non-loopback address unless `insecure`). On failure
  // returns nullptr and sets `error` to a message naming the key, the file and the reason.
  static std::unique_ptr<Authenticator> create(const gateway::AdminConfig& config,
                                               std::string& error);

  // For grpc::ServerBuilder::AddListeningPort: insecure, TLS, or mutual TLS that requires and
  // verifies a client certificate against the configured CA.
  std::shared_ptr<grpc::ServerCredentials> serverCredentials() const;

  // Who is calling. With tokens configured, reads "authorization: Bearer <token>" and compares
  // it with each token in constant time; a missing, malformed or wrong token is UNAUTHENTICATED
  // with a message that never contains what the caller sent. With only mutual TLS, the peer's
  // verified certificate makes it admin. With nothing configured, everyone is admin "local".
  // On failure `out` is {kReader, "unauthenticated"}, ready for the audit log.
  grpc::Status authenticate(const grpc::ServerContext& context, Caller& out) const;

  // Whether `caller` may make this call: a reader calling a method that changes state
  // (`mutating`) is PERMISSION_DENIED, naming its role.
  static grpc::Status authorize(const Caller& caller, bool mutating);

  bool tokensRequired() const { return !adminToken_.empty(); }
  bool clientCertificateRequired() const { return !clientCa_.empty(); }
  bool tls() const { return !certChain_.empty(); }

 private:
  Authenticator() = default;

  std::string adminToken_;
  std::string readOnlyToken_;
  std::string certChain_;  // PEM
  std::string privateKey_;
  std::string clientCa_;
};

// Warnings the daemon logs at start for a configuration that is allowed but risky: an
// unauthenticated non-loopback address (`insecure: true`), a token sent in clear text to a
// non-loopback address. Empty when there is nothing to say.
std::vector<std::string> securityWarnings(const gateway::AdminConfig& config);

}  // namespace evgate::admin
