#pragma once

// Calls to the standard gRPC services evgate serves next to its own (health checking and server
// reflection), made with raw protobuf bytes over a generic stub: the tests need two tiny
// messages, not the services' generated code. Wire format: field 1 of HealthCheckRequest is the
// service name (tag 0x0a); field 1 of HealthCheckResponse is the status enum (tag 0x08;
// 1 = SERVING, 2 = NOT_SERVING); field 7 of ServerReflectionRequest is list_services (tag 0x3a).

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace evgate::test {

// A client context with a deadline, so a call to a daemon that went wrong cannot hang a test.
inline std::unique_ptr<grpc::ClientContext> callContext(
    std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + limit);
  return context;
}

inline std::string bytesOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return "";
  std::string out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

inline grpc::ByteBuffer bufferOf(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// grpc.health.v1.Health/Check for `service`: 1 (SERVING), 2 (NOT_SERVING), or -1 if the call
// failed (`error` says why).
inline int healthStatus(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                        std::string* error = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  std::string request;
  if (!service.empty()) {
    request.push_back('\x0a');
    request.push_back(static_cast<char>(service.size()));  // names shorter than 128 bytes
    request += service;
  }
  grpc::CompletionQueue queue;
  auto call =
      stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", bufferOf(request), &queue);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  if (!status.ok()) {
    if (error != nullptr) *error = status.error_message();
    return -1;
  }
  const std::string bytes = bytesOf(response);
  // An empty message is status 0 (UNKNOWN).
  return bytes.size() == 2 && bytes[0] == '\x08' ? bytes[1] : 0;
}

// The raw ServerReflectionResponse to list_services (the service names appear in it as
// strings), or "" if the call failed.
inline std::string reflectionListServices(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::CompletionQueue queue;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &queue);
  void* tag = nullptr;
  bool ok = false;
  std::string out;
  call->StartCall(reinterpret_cast<void*>(1));
  if (queue.Next(&tag, &ok) && ok) {
    call->Write(bufferOf(std::string("\x3a\x00", 2)), reinterpret_cast<void*>(2));
    if (queue.Next(&tag, &ok) && ok) {
      grpc::ByteBuffer response;
      call->Read(&response, reinterpret_cast<void*>(3));
      if (queue.Next(&tag, &ok) && ok) out = bytesOf(response);
    }
  }
  context.TryCancel();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return out;
}

}  // namespace evgate::test
