// flow list | close | close-all.

#include <cstdint>
#include <iostream>
#include <memory>
#include <ostream>
#include <string>

#include "admin/cli/commands.h"
#include "admin/cli/filter_flags.h"
#include "admin/cli/flags.h"
#include "admin/cli/views.h"

namespace evgate::admin::cli {
namespace {

using Stub = v1::Admin::Stub;

struct ListFlags {
  FlowFilterFlags filter;
  std::string pageSize;
  std::string pageToken;
  bool all = false;
};

struct CloseFlags {
  std::string id;
  bool dryRun = false;
};

struct CloseAllFlags {
  FlowFilterFlags filter;
  std::string rate;
  bool dryRun = false;
};

void list(const ListFlags& f, Session& s) {
  v1::ListFlowsRequest request;
  *request.mutable_filter() = f.filter.toFilter();
  if (!f.pageSize.empty()) request.set_page_size(static_cast<int32_t>(toCount(f.pageSize)));
  request.set_page_token(f.pageToken);
  v1::ListFlowsResponse shown;
  s.call(&Stub::ListFlows, request, &shown);
  while (f.all && !shown.next_page_token().empty()) {
    request.set_page_token(shown.next_page_token());
    v1::ListFlowsResponse page;
    s.call(&Stub::ListFlows, request, &page);
    for (v1::Flow& flow : *page.mutable_flows()) *shown.add_flows() = std::move(flow);
    shown.set_next_page_token(page.next_page_token());
  }
  s.out().print(shown, [&](std::ostream& out) { printFlows(out, shown); });
  if (s.out().format() == Format::kTable && !shown.next_page_token().empty()) {
    std::cerr << "more flows: add --page-token " << shown.next_page_token() << ", or --all\n";
  }
}

void close(const CloseFlags& f, Session& s) {
  v1::CloseFlowRequest request;
  request.set_id(toFlowId(f.id));
  request.set_validate_only(f.dryRun);
  v1::CloseFlowResponse reply;
  s.call(&Stub::CloseFlow, request, &reply);
  s.out().print(reply, [&](std::ostream& out) { out << "flow " << f.id << " closed\n"; });
  s.noteDryRun(f.dryRun);
}

// Streams progress until the gateway says done; no deadline, as closing many flows slowly is
// the point of --rate.
void closeAll(const CloseAllFlags& f, Session& s) {
  v1::CloseFlowsRequest request;
  *request.mutable_filter() = f.filter.toFilter();
  if (!f.rate.empty()) request.set_max_per_second(toCount(f.rate));
  request.set_validate_only(f.dryRun);
  Connection& connection = s.connection();
  const auto context = connection.streamContext();
  const auto reader = connection.stub().CloseFlows(context.get(), request);
  v1::CloseFlowsProgress progress;
  while (reader->Read(&progress)) {
    s.out().printStreamed(progress, [&](std::ostream& out) { printProgress(out, progress); });
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) throw RpcError(std::move(status));
  s.noteDryRun(f.dryRun);
}

}  // namespace

void addFlowCommands(CLI::App& root, Action& action) {
  CLI::App* noun = root.add_subcommand("flow", "Flows: relayed client connections");
  noun->require_subcommand(1);

  auto listFlags = std::make_shared<ListFlags>();
  CLI::App* listCommand = noun->add_subcommand("list", "Open flows matching the filter flags");
  listFlags->filter.addTo(listCommand);
  listCommand->add_option("--page-size", listFlags->pageSize, "Flows per page (default 100)")
      ->check(CLI::Range(1, 1000));
  listCommand->add_option("--page-token", listFlags->pageToken,
                          "Continue from a previous page's next_page_token");
  listCommand->add_flag("--all", listFlags->all, "Fetch every page");
  onRun(listCommand, action, [listFlags](Session& s) { list(*listFlags, s); });

  auto closeFlags = std::make_shared<CloseFlags>();
  CLI::App* closeCommand = noun->add_subcommand("close", "Close one flow");
  closeCommand->add_option("id", closeFlags->id, "The flow's id")->required()->check(flowIdText());
  addDryRun(closeCommand, closeFlags->dryRun);
  onRun(closeCommand, action, [closeFlags](Session& s) { close(*closeFlags, s); });

  auto allFlags = std::make_shared<CloseAllFlags>();
  CLI::App* allCommand = noun->add_subcommand(
      "close-all",
      "Close the flows matching the filter flags (all without one), printing progress");
  allFlags->filter.addTo(allCommand);
  allCommand->add_option("--rate", allFlags->rate, "Close at most this many per second")
      ->check(countText());
  addDryRun(allCommand, allFlags->dryRun);
  onRun(allCommand, action, [allFlags](Session& s) { closeAll(*allFlags, s); });
}

}  // namespace evgate::admin::cli
