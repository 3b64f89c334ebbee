#include "tests/admin/test_certs.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace evgate::admin::testing {

TempDir::TempDir() {
  std::string pattern = ::testing::TempDir() + "evgate-admin-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << pattern << ": " << std::strerror(errno);
    return;
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::file(const std::string& name) const { return path_ + "/" + name; }

bool writeTextFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  return static_cast<bool>(out.flush());
}

std::string readTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::shared_ptr<grpc::ChannelCredentials> tlsChannelCredentials(const std::string& caFile,
                                                                const std::string& certFile,
                                                                const std::string& keyFile) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = readTextFile(caFile);
  if (!certFile.empty()) {
    options.pem_cert_chain = readTextFile(certFile);
    options.pem_private_key = readTextFile(keyFile);
  }
  return grpc::SslCredentials(options);
}

namespace {

// Extensions shared by every CA's configuration; `openssl ca` needs one configuration per CA
// for its database, so each CA gets this with its own [ca] section in front.
constexpr const char* kExtensions = R"(
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ policy_any ]
organizationName = optional
commonName = supplied
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
)";

// The [ca] section of one CA's configuration; NAME stands for the CA's file name prefix.
constexpr const char* kCaSection = R"([ ca ]
default_ca = this_ca
[ this_ca ]
database = NAME.index
serial = NAME.serial
new_certs_dir = .
certificate = NAME.crt
private_key = NAME.key
default_md = sha256
policy = policy_any
preserve = yes
unique_subject = no
copy_extensions = none
)";

constexpr const char* kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

}  // namespace

TestCerts::TestCerts() {
  if (dir_.path().empty()) {
    error_ = "no temporary directory";
    return;
  }
  // Each step stops at the first failure; error_ then says which.
  (void)(makeCa("ca", "/CN=evgate-test-ca") && makeCa("other-ca", "/CN=evgate-other-ca") &&
         makeSigned("server", "ca", "/CN=evgate-test-server", "server_ext", "-days 2") &&
         makeSigned("client", "ca", "/O=evgate-tests/CN=evgate-test-client", "client_ext",
                    "-days 2") &&
         makeSigned("other-client", "other-ca", "/CN=evgate-other-client", "client_ext",
                    "-days 2") &&
         // `openssl x509 -days` cannot go negative; `openssl ca` takes explicit dates.
         makeSigned("expired", "ca", "/CN=evgate-expired-client", "client_ext",
                    "-startdate 20200101000000Z -enddate 20200102000000Z"));
}

bool TestCerts::run(const std::string& command) {
  const std::string log = dir_.file("openssl.log");
  const std::string line = "cd '" + dir_.path() + "' && " + command + " >'" + log + "' 2>&1";
  const int status = std::system(line.c_str());
  if (status == 0) return true;
  error_ = "failed (" + std::to_string(status) + "): " + command + "\n" + readTextFile(log);
  return false;
}

bool TestCerts::makeCa(const std::string& name, const std::string& subject) {
  std::string config = std::string(kCaSection) + kExtensions;
  for (size_t at = config.find("NAME"); at != std::string::npos; at = config.find("NAME", at)) {
    config.replace(at, 4, name);
  }
  if (!writeTextFile(dir_.file(name + ".cnf"), config) ||
      !writeTextFile(dir_.file(name + ".index"), "") ||
      !writeTextFile(dir_.file(name + ".serial"), "1000\n")) {
    error_ = "cannot write the configuration of " + name;
    return false;
  }
  return run("openssl req -x509 " + std::string(kNewKey) + " -keyout " + name + ".key -out " +
             name + ".crt -days 2 -subj " + subject + " -config " + name +
             ".cnf -extensions ca_ext");
}

bool TestCerts::makeSigned(const std::string& name, const std::string& ca,
                           const std::string& subject, const std::string& extensions,
                           const std::string& validity) {
  return run("openssl req -new " + std::string(kNewKey) + " -keyout " + name + ".key -out " + name +
             ".csr -subj " + subject + " -config " + ca + ".cnf") &&
         run("openssl ca -batch -notext -config " + ca + ".cnf -extensions " + extensions + " " +
             validity + " -in " + name + ".csr -out " + name + ".crt");
}

}  // namespace evgate::admin::testing
