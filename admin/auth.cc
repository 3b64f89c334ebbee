#include "admin/auth.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <optional>

#include "admin/state_file.h"

namespace evgate::admin {
namespace {

// A token is a line of text, not a document: refuse to read more.
constexpr size_t kMaxTokenFileBytes = 4096;
// PEM files: a long chain or a CA bundle, well under this.
constexpr size_t kMaxPemFileBytes = size_t{4} << 20;
constexpr std::string_view kBearer = "Bearer ";

// Reads a credential file; on failure sets `error` to "KEY: cannot open FILE: reason".
std::optional<std::string> readCredentialFile(std::string_view key, const std::string& path,
                                              size_t maxBytes, std::string& error) {
  std::string contents;
  if (const std::optional<FileError> failure = readWholeFile(path, contents, maxBytes)) {
    error = std::string(key) + ": " + failure->message;
    return std::nullopt;
  }
  return contents;
}

// The token in a token file: the content without trailing whitespace (editors and `echo` add a
// final newline), which must be one printable ASCII word so it can travel in a header.
std::optional<std::string> readToken(std::string_view key, const std::string& path,
                                     std::string& error) {
  std::optional<std::string> token = readCredentialFile(key, path, kMaxTokenFileBytes, error);
  if (!token) return std::nullopt;
  while (!token->empty() &&
         std::string_view(" \t\r\n\v\f").find(token->back()) != std::string::npos) {
    token->pop_back();
  }
  if (token->empty()) {
    error = std::string(key) + ": " + path + " is empty";
    return std::nullopt;
  }
  const bool printable = std::all_of(token->begin(), token->end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
  if (!printable) {
    // The message does not quote the content: it is a secret, even when malformed.
    error = std::string(key) + ": " + path +
            " holds characters a bearer token cannot have (use printable ASCII without spaces)";
    return std::nullopt;
  }
  return token;
}

// OpenSSL reports through a per-thread error queue that gRPC's own TLS code also reads; leave it
// empty whatever happens here.
struct OpenSslErrorsCleared {
  OpenSslErrorsCleared() = default;
  OpenSslErrorsCleared(const OpenSslErrorsCleared&) = delete;
  OpenSslErrorsCleared& operator=(const OpenSslErrorsCleared&) = delete;
  ~OpenSslErrorsCleared() { ERR_clear_error(); }
};

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

BioPtr memoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Without this callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
int noPassphrase(char*, int, int, void*) { return 0; }

X509Ptr firstCertificate(const std::string& pem) {
  const BioPtr bio = memoryBio(pem);
  return X509Ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, noPassphrase, nullptr) : nullptr);
}

// Catches the mistakes that would otherwise surface only as a failed handshake on the first
// call: a file that is not PEM, an encrypted key, a key of another certificate.
bool checkTlsFiles(const gateway::AdminConfig& config, const std::string& certChain,
                   const std::string& privateKey, const std::string& clientCa, std::string& error) {
  const OpenSslErrorsCleared cleared;
  const X509Ptr cert = firstCertificate(certChain);
  if (!cert) {
    error = "admin.tls.cert_file: " + config.tlsCertFile + " holds no PEM certificate";
    return false;
  }
  const BioPtr keyBio = memoryBio(privateKey);
  const PkeyPtr key(keyBio ? PEM_read_bio_PrivateKey(keyBio.get(), nullptr, noPassphrase, nullptr)
                           : nullptr);
  if (!key) {
    error = "admin.tls.key_file: " + config.tlsKeyFile +
            " holds no PEM private key (an encrypted key is not supported)";
    return false;
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    error = "admin.tls.key_file: " + config.tlsKeyFile +
            " is not the key of the certificate in admin.tls.cert_file " + config.tlsCertFile;
    return false;
  }
  if (!config.tlsClientCaFile.empty() && !firstCertificate(clientCa)) {
    error = "admin.tls.client_ca_file: " + config.tlsClientCaFile + " holds no PEM certificate";
    return false;
  }
  return true;
}

// Compares in time that depends only on the length of what the caller sent, so that timing
// reveals nothing about the expected token, not even how many leading bytes matched.
bool constantTimeEquals(std::string_view presented, std::string_view expected) {
  unsigned char difference = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < presented.size(); ++i) {
    difference |= static_cast<unsigned char>(presented[i] ^ expected[i % expected.size()]);
  }
  return difference == 0;
}

bool startsWithBearer(std::string_view value) {
  // The scheme is case-insensitive (RFC 7235 section 2.1).
  if (value.size() < kBearer.size()) return false;
  return std::equal(kBearer.begin(), kBearer.end(), value.begin(), [](char a, char b) {
    return (a >= 'A' && a <= 'Z' ? a + 32 : a) == (b >= 'A' && b <= 'Z' ? b + 32 : b);
  });
}

// "cert:<subject>" of the verified client certificate, or "" without one.
std::string peerCertificateIdentity(const grpc::ServerContext& context) {
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return "";
  for (const char* property : {GRPC_X509_SUBJECT_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME}) {
    const std::vector<grpc::string_ref> values = auth->FindPropertyValues(property);
    if (!values.empty() && !values.front().empty()) {
      return "cert:" + std::string(values.front().data(), values.front().size());
    }
  }
  return "cert:unknown";
}

grpc::Status unauthenticated(const std::string& message) {
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, message);
}

}  // namespace

const char* toString(Role role) {
  switch (role) {
    case Role::kReader:
      return "reader";
    case Role::kAdmin:
      return "admin";
  }
  return "reader";
}

std::unique_ptr<Authenticator> Authenticator::create(const gateway::AdminConfig& config,
                                                     std::string& error) {
  // The parser checks this too; repeating it here keeps a hand-built config (tests, a future
  // reload path) from opening an unauthenticated port to the network.
  if (!config.isLoopback() && config.tokenFile.empty() && config.tlsClientCaFile.empty() &&
      !config.insecure) {
    error = "admin.address: " + config.address +
            " is not loopback; set admin.token_file, admin.tls.client_ca_file, or "
            "admin.insecure: true";
    return nullptr;
  }
  if (!config.readOnlyTokenFile.empty() && config.tokenFile.empty()) {
    error = "admin.read_only_token_file: needs admin.token_file";
    return nullptr;
  }
  if (config.tlsCertFile.empty() != config.tlsKeyFile.empty() ||
      (!config.tlsClientCaFile.empty() && config.tlsCertFile.empty())) {
    error = "admin.tls: client_ca_file needs cert_file and key_file, which go together";
    return nullptr;
  }

  std::unique_ptr<Authenticator> authenticator(new Authenticator());
  if (!config.tokenFile.empty()) {
    std::optional<std::string> token = readToken("admin.token_file", config.tokenFile, error);
    if (!token) return nullptr;
    authenticator->adminToken_ = std::move(*token);
  }
  if (!config.readOnlyTokenFile.empty()) {
    std::optional<std::string> token =
        readToken("admin.read_only_token_file", config.readOnlyTokenFile, error);
    if (!token) return nullptr;
    if (*token == authenticator->adminToken_) {
      // One token for two roles would make every caller admin.
      error = "admin.read_only_token_file: " + config.readOnlyTokenFile +
              " holds the same token as admin.token_file " + config.tokenFile;
      return nullptr;
    }
    authenticator->readOnlyToken_ = std::move(*token);
  }
  if (config.tlsCertFile.empty()) return authenticator;

  const auto readPem = [&](std::string_view key, const std::string& path) {
    return readCredentialFile(key, path, kMaxPemFileBytes, error);
  };
  std::optional<std::string> certChain = readPem("admin.tls.cert_file", config.tlsCertFile);
  if (!certChain) return nullptr;
  std::optional<std::string> privateKey = readPem("admin.tls.key_file", config.tlsKeyFile);
  if (!privateKey) return nullptr;
  std::optional<std::string> clientCa = std::string();
  if (!config.tlsClientCaFile.empty()) {
    clientCa = readPem("admin.tls.client_ca_file", config.tlsClientCaFile);
    if (!clientCa) return nullptr;
  }
  if (!checkTlsFiles(config, *certChain, *privateKey, *clientCa, error)) return nullptr;
  authenticator->certChain_ = std::move(*certChain);
  authenticator->privateKey_ = std::move(*privateKey);
  authenticator->clientCa_ = std::move(*clientCa);
  return authenticator;
}

std::shared_ptr<grpc::ServerCredentials> Authenticator::serverCredentials() const {
  if (!tls()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      clientCertificateRequired() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                  : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_root_certs = clientCa_;
  options.pem_key_cert_pairs.push_back({privateKey_, certChain_});
  return grpc::SslServerCredentials(options);
}

grpc::Status Authenticator::authenticate(const grpc::ServerContext& context, Caller& out) const {
  out = Caller{Role::kReader, "unauthenticated"};
  std::string certIdentity;
  if (clientCertificateRequired()) {
    // The handshake already refused peers without a valid certificate; this guards against a
    // server built with other credentials than serverCredentials().
    certIdentity = peerCertificateIdentity(context);
    if (certIdentity.empty()) return unauthenticated("a verified client certificate is required");
  }
  if (!tokensRequired()) {
    out = Caller{Role::kAdmin, certIdentity.empty() ? "local" : certIdentity};
    return grpc::Status::OK;
  }

  const auto& metadata = context.client_metadata();
  const auto [first, last] = metadata.equal_range("authorization");
  if (first == last) {
    return unauthenticated(
        "missing credentials: expected metadata \"authorization: Bearer "
        "<token>\"");
  }
  if (std::next(first) != last) {
    return unauthenticated("more than one \"authorization\" metadata entry");
  }
  const std::string_view value(first->second.data(), first->second.size());
  if (!startsWithBearer(value) || value.size() == kBearer.size()) {
    return unauthenticated("malformed credentials: expected \"authorization: Bearer <token>\"");
  }
  const std::string_view token = value.substr(kBearer.size());
  // Both comparisons always run, so timing does not tell which token was close.
  const bool isAdmin = constantTimeEquals(token, adminToken_);
  const bool isReader = !readOnlyToken_.empty() && constantTimeEquals(token, readOnlyToken_);
  if (!isAdmin && !isReader) return unauthenticated("invalid bearer token");

  std::string identity = isAdmin ? "admin-token" : "read-only-token";
  if (!certIdentity.empty()) identity += "+" + certIdentity;
  out = Caller{isAdmin ? Role::kAdmin : Role::kReader, std::move(identity)};
  return grpc::Status::OK;
}

grpc::Status Authenticator::authorize(const Caller& caller, bool mutating) {
  if (!mutating || caller.role == Role::kAdmin) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      caller.identity + " has role " + toString(caller.role) +
                          ", which may only read (GetStatus, Get*, List*, Watch); this call "
                          "changes the gateway");
}

std::vector<std::string> securityWarnings(const gateway::AdminConfig& config) {
  std::vector<std::string> warnings;
  if (config.isLoopback()) return warnings;
  if (config.tokenFile.empty() && config.tlsClientCaFile.empty()) {
    warnings.push_back("admin API on " + config.address +
                       " is not loopback and needs no credentials (admin.insecure: true): "
                       "anyone who can reach it can change the gateway");
  } else if (!config.tokenFile.empty() && config.tlsCertFile.empty()) {
    warnings.push_back("admin API on " + config.address +
                       " is not loopback and has no TLS: bearer tokens cross the network in "
                       "clear text; set admin.tls.cert_file and admin.tls.key_file");
  }
  return warnings;
}

}  // namespace evgate::admin
