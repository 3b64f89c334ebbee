// How each resource looks in `-o table`: a list is a table with a header row, one resource is
// "key: value" lines (keys are the proto field names), a streamed message is one line.

#pragma once

#include <ostream>
#include <string>

#include "evgate/admin/v1/admin.pb.h"

namespace evgate::admin::cli {

void printStatus(std::ostream& out, const v1::Status& status);

void printListener(std::ostream& out, const v1::Listener& listener);
void printListeners(std::ostream& out, const v1::ListListenersResponse& list);

void printCluster(std::ostream& out, const v1::Cluster& cluster);
void printClusters(std::ostream& out, const v1::ListClustersResponse& list);

void printFlows(std::ostream& out, const v1::ListFlowsResponse& list);
// "closed 120, remaining 880", or "done: closed 1000" on the last message.
void printProgress(std::ostream& out, const v1::CloseFlowsProgress& progress);

void printEvents(std::ostream& out, const v1::ListEventsResponse& list);
void printScheduledEvent(std::ostream& out, const v1::ScheduledEvent& event);

// SEQUENCE TIME TYPE SUBJECT DETAIL on one line.
void printWatchEvent(std::ostream& out, const v1::WatchEvent& event);

// "flows: listener=web client=10.0.0.0/8"-style summary of a filter; "all" when empty.
std::string filterText(const v1::FlowFilter& filter);

}  // namespace evgate::admin::cli
