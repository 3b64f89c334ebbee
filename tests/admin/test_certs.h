#pragma once

// Test fixtures for the admin API's security: a temporary directory, and a set of X.509
// certificates made with the openssl command line (EC P-256 keys, so generation is quick).

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

namespace evgate::admin::testing {

// A fresh directory under ::testing::TempDir(), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string file(const std::string& name) const;

 private:
  std::string path_;
};

// Writes `contents` to `path` (replacing it); false on failure.
bool writeTextFile(const std::string& path, const std::string& contents);
// The contents of `path`; "" if it cannot be read.
std::string readTextFile(const std::string& path);

// Client channel credentials for TLS: trusting the CA in `caFile`, presenting the certificate
// and key in `certFile` and `keyFile` when given (mutual TLS).
std::shared_ptr<grpc::ChannelCredentials> tlsChannelCredentials(const std::string& caFile,
                                                                const std::string& certFile = "",
                                                                const std::string& keyFile = "");

// Certificates and keys (PEM files) in their own temporary directory:
//   ca          "CN=evgate-test-ca", signs the server and client certificates
//   server      "CN=evgate-test-server", subjectAltName IP:127.0.0.1 and DNS:localhost
//   client      "CN=evgate-test-client,O=evgate-tests", signed by ca, valid now
//   otherCa     "CN=evgate-other-ca", an unrelated CA
//   otherClient "CN=evgate-other-client", signed by otherCa
//   expired     "CN=evgate-expired-client", signed by ca, valid only on 2020-01-01
class TestCerts {
 public:
  // Generates everything; on failure ok() is false and error() says which command failed.
  TestCerts();

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // Paths of the PEM files.
  std::string caCert() const { return dir_.file("ca.crt"); }
  std::string serverCert() const { return dir_.file("server.crt"); }
  std::string serverKey() const { return dir_.file("server.key"); }
  std::string clientCert() const { return dir_.file("client.crt"); }
  std::string clientKey() const { return dir_.file("client.key"); }
  std::string otherCaCert() const { return dir_.file("other-ca.crt"); }
  std::string otherClientCert() const { return dir_.file("other-client.crt"); }
  std::string otherClientKey() const { return dir_.file("other-client.key"); }
  std::string expiredClientCert() const { return dir_.file("expired.crt"); }
  std::string expiredClientKey() const { return dir_.file("expired.key"); }

  static constexpr const char* kClientSubject = "CN=evgate-test-client,O=evgate-tests";

 private:
  // Runs `command` in the directory; on failure records it with its output and returns false.
  bool run(const std::string& command);
  bool makeCa(const std::string& name, const std::string& subject);
  bool makeSigned(const std::string& name, const std::string& ca, const std::string& subject,
                  const std::string& extensions, const std::string& validity);

  TempDir dir_;
  std::string error_;
};

}  // namespace evgate::admin::testing
