#include "gateway/metrics/gateway_collector.h"

#include <string>
#include <unordered_map>

#include "gateway/config/names.h"
#include "gateway/log.h"
#include "gateway/metrics/family_builder.h"

namespace evgate::gateway::metrics {
namespace {

double seconds(uint64_t nanos) { return static_cast<double>(nanos) / 1e9; }

// The listeners' families (traffic and backpressure counters); with ListenerDetail::kBasic,
// connections and bytes only.
void collectListeners(const Gateway::MetricsView& view,
                      const std::vector<Gateway::WorkerMetrics>& workers, ListenerDetail detail,
                      std::vector<prometheus::MetricFamily>& out) {
  const bool full = detail == ListenerDetail::kFull;
  auto accepted = counterFamily("evgate_listener_connections_accepted_total",
                                "Client connections accepted and handed to a flow.");
  auto rejected = counterFamily("evgate_listener_connections_rejected_total",
                                "Client connections closed at accept, by reason.");
  auto active = gaugeFamily("evgate_listener_connections_active", "Flows open now.");
  auto maxConnections =
      gaugeFamily("evgate_listener_max_connections", "The listener's max_connections.");
  auto paused = gaugeFamily("evgate_listener_paused",
                            "1 while the listener is paused (bound, not accepting), else 0.");
  auto bytes = counterFamily("evgate_listener_bytes_total", "Bytes relayed, by direction.");
  auto closed = counterFamily("evgate_listener_flows_closed_total", "Flows ended, by reason.");
  auto duration = histogramFamily("evgate_listener_flow_duration_seconds",
                                  "How long ended flows lasted, accept to close.");
  auto pauses = counterFamily("evgate_backpressure_read_pauses_total",
                              "Times reading stopped because the other side's output reached "
                              "buffer_limit, by the direction held back.");
  auto pausedSeconds = counterFamily("evgate_backpressure_paused_seconds_total",
                                     "Time reading spent stopped by backpressure, summed over "
                                     "flows, by the direction held back.");
  auto buffered = gaugeFamily("evgate_backpressure_buffered_bytes",
                              "Bytes held in the listener's flows' buffers now.");
  auto atLimit = gaugeFamily("evgate_backpressure_flows_at_limit",
                             "Flows with at least one direction stopped by backpressure now.");

  // What the loops sampled, by listener name (only the workers that answered).
  std::unordered_map<std::string, WorkerSample::Listener> sampled;
  bool everyLoopAnswered = true;
  for (const Gateway::WorkerMetrics& worker : workers) {
    if (!full) break;
    if (!worker.sample) {
      everyLoopAnswered = false;
      continue;
    }
    for (const WorkerSample::Listener& listener : worker.sample->listeners) {
      WorkerSample::Listener& sum = sampled[listener.name];
      sum.bufferedBytes += listener.bufferedBytes;
      sum.flowsAtLimit += listener.flowsAtLimit;
    }
  }

  for (const Gateway::MetricsView::Listener& entry : view.listeners) {
    const ListenerState& state = *entry.state;
    if (!state.stats) continue;
    const stats::ListenerStats& counts = *state.stats;
    const std::string& name = counts.name;
    const Labels labels{{"listener", name}};

    uint64_t acceptedSum = 0;
    std::array<uint64_t, stats::kDirections> bytesSum{};
    std::array<uint64_t, stats::kDirections> pausesSum{};
    std::array<uint64_t, stats::kDirections> pausedNanosSum{};
    std::array<uint64_t, stats::kCloseReasons> closedSum{};
    stats::HistogramTotal durationSum(stats::flowDurationBuckets());
    for (size_t w = 0; w < counts.workers.size(); ++w) {
      const stats::ListenerCounters& c = counts.workers.at(w);
      acceptedSum += c.accepted.value();
      for (size_t d = 0; d < stats::kDirections; ++d) {
        bytesSum[d] += c.bytes[d].value();
        pausesSum[d] += c.readPauses[d].value();
        pausedNanosSum[d] += c.pausedNanos[d].value();
      }
      if (!full) continue;
      for (size_t r = 0; r < stats::kCloseReasons; ++r) closedSum[r] += c.closed[r].value();
      durationSum.add(c.flowDuration);
    }

    accepted.add(labels, static_cast<double>(acceptedSum));
    for (size_t r = 0; r < stats::kRejectReasons; ++r) {
      const uint64_t count = stats::sumOver(
          counts.workers, [r](const stats::ListenerCounters& c) { return c.rejected[r].value(); });
      rejected.add({{"listener", name}, {"reason", stats::rejectReasonName(r)}},
                   static_cast<double>(count));
    }
    active.add(labels, state.connections.load(std::memory_order_relaxed));
    maxConnections.add(labels, entry.maxConnections);
    paused.add(labels, state.paused.load(std::memory_order_relaxed) ? 1 : 0);
    for (size_t d = 0; d < stats::kDirections; ++d) {
      const Labels withDirection{{"listener", name}, {"direction", stats::directionName(d)}};
      bytes.add(withDirection, static_cast<double>(bytesSum[d]));
      if (!full) continue;
      pauses.add(withDirection, static_cast<double>(pausesSum[d]));
      pausedSeconds.add(withDirection, seconds(pausedNanosSum[d]));
    }
    if (!full) continue;
    for (size_t r = 1; r < stats::kCloseReasons; ++r) {  // 0 is kNone: never a closed flow's
      // Connections refused at accept never become flows: their reasons are `rejected`'s.
      const auto reason = static_cast<CloseReason>(r);
      if (reason == CloseReason::kLimit || reason == CloseReason::kDenied) continue;
      closed.add({{"listener", name}, {"reason", toString(static_cast<CloseReason>(r))}},
                 static_cast<double>(closedSum[r]));
    }
    duration.add(labels, durationSum);
    // A partial sum would look like a drop: without every loop's answer, no value.
    if (everyLoopAnswered) {
      const auto it = sampled.find(name);
      buffered.add(labels, it == sampled.end() ? 0 : static_cast<double>(it->second.bufferedBytes));
      atLimit.add(labels, it == sampled.end() ? 0 : static_cast<double>(it->second.flowsAtLimit));
    }
  }
  for (FamilyBuilder* family : {&accepted, &rejected, &active, &maxConnections, &paused, &bytes,
                                &closed, &duration, &pauses, &pausedSeconds, &buffered, &atLimit}) {
    family->moveTo(out);
  }
}

void collectClusters(const Gateway::MetricsView& view, std::vector<prometheus::MetricFamily>& out) {
  auto attempts =
      counterFamily("evgate_upstream_connect_attempts_total",
                    "Connect attempts to the endpoint that ended (succeeded or failed).");
  auto failures = counterFamily("evgate_upstream_connect_failures_total",
                                "Connect attempts that failed, by reason.");
  auto connectDuration =
      histogramFamily("evgate_upstream_connect_duration_seconds",
                      "Time from connect() to the connection being established (successes).");
  auto flows = gaugeFamily("evgate_upstream_flows_active", "Flows connected to the endpoint now.");
  auto healthy = gaugeFamily("evgate_endpoint_healthy",
                             "1 if active health checks pass (or there are none), else 0.");
  auto ejected = gaugeFamily("evgate_endpoint_ejected",
                             "1 while outlier detection has the endpoint ejected, else 0.");
  auto adminState = gaugeFamily("evgate_endpoint_admin_state",
                                "1 for the endpoint's current admin state, 0 for the others.");
  auto endpoints = gaugeFamily("evgate_cluster_endpoints", "Endpoints in the cluster.");
  auto available = gaugeFamily("evgate_cluster_endpoints_available",
                               "Endpoints that may take new flows now (healthy, active, not "
                               "ejected).");
  static constexpr EndpointAdminState kStates[] = {
      EndpointAdminState::kActive, EndpointAdminState::kDraining, EndpointAdminState::kDisabled};

  for (const auto& cluster : view.clusters) {
    const std::string& name = cluster->config().name;
    const int64_t now = cluster->nowNanos();
    size_t availableCount = 0;
    const stats::ClusterStats* counts = cluster->stats().get();
    for (size_t i = 0; i < cluster->endpointCount(); ++i) {
      const std::string address = cluster->config().endpoints[i].address.toString();
      const Labels labels{{"cluster", name}, {"endpoint", address}};
      if (counts != nullptr && i < counts->endpoints.size()) {
        const stats::EndpointStats& endpoint = *counts->endpoints[i];
        uint64_t attemptSum = 0;
        std::array<uint64_t, stats::kConnectFailureReasons> failureSum{};
        int64_t flowSum = 0;
        for (size_t w = 0; w < endpoint.workers.size(); ++w) {
          const stats::EndpointCounters& c = endpoint.workers.at(w);
          attemptSum += c.attempts.value();
          for (size_t r = 0; r < failureSum.size(); ++r) failureSum[r] += c.failures[r].value();
          flowSum += c.activeFlows.value();
        }
        attempts.add(labels, static_cast<double>(attemptSum));
        for (size_t r = 0; r < failureSum.size(); ++r) {
          failures.add(
              {{"cluster", name}, {"endpoint", address}, {"reason", stats::connectFailureName(r)}},
              static_cast<double>(failureSum[r]));
        }
        flows.add(labels, static_cast<double>(std::max<int64_t>(0, flowSum)));
      }
      healthy.add(labels, cluster->healthy(i) ? 1 : 0);
      ejected.add(labels, now < cluster->ejectedUntil(i) ? 1 : 0);
      const EndpointAdminState current = cluster->adminState(i);
      for (const EndpointAdminState state : kStates) {
        adminState.add({{"cluster", name}, {"endpoint", address}, {"state", toString(state)}},
                       state == current ? 1 : 0);
      }
      availableCount += cluster->available(i, now) ? 1 : 0;
    }
    endpoints.add({{"cluster", name}}, static_cast<double>(cluster->endpointCount()));
    available.add({{"cluster", name}}, static_cast<double>(availableCount));
    if (counts != nullptr) {
      stats::HistogramTotal total(stats::connectDurationBuckets());
      for (size_t w = 0; w < counts->counters->size(); ++w) {
        total.add(counts->counters->at(w).connectDuration);
      }
      connectDuration.add({{"cluster", name}}, total);
    }
  }
  for (FamilyBuilder* family : {&attempts, &failures, &connectDuration, &flows, &healthy, &ejected,
                                &adminState, &endpoints, &available}) {
    family->moveTo(out);
  }
}

void collectLoops(const std::vector<Gateway::WorkerMetrics>& workers,
                  std::vector<prometheus::MetricFamily>& out) {
  auto iterations =
      counterFamily("evgate_reactor_loop_iterations_total",
                    "Event-loop iterations (one poll and the callbacks it made ready).");
  auto iterationDuration = histogramFamily(
      "evgate_reactor_loop_iteration_duration_seconds",
      "Time an iteration spent running callbacks after its poll returned (the loop lag).");
  auto events = gaugeFamily("evgate_reactor_events", "Events on the loop by lifecycle state.");
  auto timers = gaugeFamily("evgate_reactor_timers", "Events with a pending timeout.");
  auto queued = gaugeFamily("evgate_reactor_queued_functions",
                            "Functions posted to the loop (runInLoop) and not run yet.");
  for (const Gateway::WorkerMetrics& worker : workers) {
    const std::string index = std::to_string(worker.index);
    const Labels labels{{"worker", index}};
    iterations.add(labels, static_cast<double>(worker.iterations));
    iterationDuration.add(labels, worker.iterationDuration);
    queued.add(labels, static_cast<double>(worker.queuedFunctions));
    if (!worker.sample) continue;
    const reactor::EventCounts& counts = worker.sample->events;
    events.add({{"worker", index}, {"state", "initialized"}},
               static_cast<double>(counts.initialized));
    events.add({{"worker", index}, {"state", "pending"}}, static_cast<double>(counts.pending));
    events.add({{"worker", index}, {"state", "active"}}, static_cast<double>(counts.active));
    timers.add(labels, static_cast<double>(counts.timers));
  }
  for (FamilyBuilder* family : {&iterations, &iterationDuration, &events, &timers, &queued}) {
    family->moveTo(out);
  }
}

void collectBudget(const Gateway::BudgetUse& budget, std::vector<prometheus::MetricFamily>& out) {
  auto limit = gaugeFamily("evgate_buffer_budget_bytes",
                           "The memory budget for relayed bytes (max_buffered_bytes); 0: none.");
  auto used = gaugeFamily("evgate_buffer_budget_used_bytes",
                          "Bytes all flows hold in buffers and pipes, by the workers' last "
                          "counts (what the budget is checked against).");
  limit.add({}, static_cast<double>(budget.limit));
  used.add({}, static_cast<double>(budget.used));
  limit.moveTo(out);
  used.moveTo(out);
}

// The process log's queue (started by the daemon) and the access log's, each when there is one.
void collectLogQueues(const Gateway& gateway, std::vector<prometheus::MetricFamily>& out) {
  std::vector<std::pair<std::string, LogSink::Stats>> queues;
  if (const std::optional<LogSink::Stats> process = logQueueStats()) {
    queues.emplace_back("process", *process);
  }
  if (const std::optional<LogSink::Stats> access = gateway.accessLogQueue()) {
    queues.emplace_back("access", *access);
  }
  if (queues.empty()) return;
  auto dropped = counterFamily("evgate_log_lines_dropped_total",
                               "Log lines lost: the queue was full (its reader fell behind), "
                               "or the write failed.");
  auto queued = gaugeFamily("evgate_log_queue_bytes", "Bytes of lines waiting to be written.");
  auto limit = gaugeFamily("evgate_log_queue_limit_bytes",
                           "The queue's limit (log.queue_limit, access_log.queue_limit).");
  for (const auto& [log, stats] : queues) {
    dropped.add({{"log", log}}, static_cast<double>(stats.droppedLines));
    queued.add({{"log", log}}, static_cast<double>(stats.queuedBytes));
    limit.add({{"log", log}}, static_cast<double>(stats.queueLimit));
  }
  for (FamilyBuilder* family : {&dropped, &queued, &limit}) family->moveTo(out);
}

}  // namespace

std::vector<prometheus::MetricFamily> GatewayCollector::Collect() const {
  const auto deadline = std::chrono::steady_clock::now() + sampleTimeout_;
  const std::shared_ptr<const Gateway::MetricsView> view = gateway_.metricsView();
  const std::vector<Gateway::WorkerMetrics> workers = gateway_.sampleWorkers(deadline);
  std::vector<prometheus::MetricFamily> out;
  collectListeners(*view, workers, detail_, out);
  collectClusters(*view, out);
  collectLoops(workers, out);
  if (const std::optional<Gateway::BudgetUse> budget = gateway_.bufferBudget()) {
    collectBudget(*budget, out);
  }
  if (!workers.empty()) collectLogQueues(gateway_, out);  // running: like the rest, not before
  return out;
}

}  // namespace evgate::gateway::metrics
