// Each evgatectl command sends the request it should: fields from arguments and flags,
// durations and sizes converted, update masks naming only the flags given, validate_only for
// --dry-run; and shows the answer.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/admin/cli/evgatectl_test_util.h"

namespace evgate::test {
namespace {

// --- status, drain ------------------------------------------------------------------------------

TEST_F(EvgatectlTest, DrainTimeoutAfterTheCommandIsTheDrainsNotTheCalls) {
  fake_.answer("Drain", textProto<v1::DrainResponse>("active_flows: 12"));
  const CtlResult r = ctl("--timeout 5s drain --timeout 30s --dry-run");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "draining: 12 flows open\n");
  EXPECT_NE(r.err.find("dry run"), std::string::npos) << r;
  EXPECT_TRUE(equalsText(fake_.last<v1::DrainRequest>("Drain"),
                         "timeout { seconds: 30 } validate_only: true"));
  const auto call = fake_.calls("Drain").back();
  EXPECT_LE(call.deadline - call.received, std::chrono::seconds(5));
}

// --- listener -----------------------------------------------------------------------------------

TEST_F(EvgatectlTest, ListenerCreateSendsEveryFlag) {
  fake_.answer("CreateListener", textProto<v1::Listener>(R"pb(
                 name: "web"
                 bind: "0.0.0.0:8080"
                 bound_address: "0.0.0.0:8080"
                 cluster: "backends"
                 buffer_limit_bytes: 65536
                 idle_timeout { seconds: 300 }
                 source: SOURCE_API
               )pb"));
  const CtlResult r =
      ctl("listener create web --bind 0.0.0.0:8080 --cluster backends --max-connections 10000 "
          "--buffer-limit 64KiB --idle-timeout 5m --half-close-timeout 30s --max-lifetime 1h "
          "--max-lifetime-jitter 250ms --allow 10.0.0.0/8 --allow 192.168.0.0/16 --proxy-protocol "
          "--proxy-protocol-timeout 3s --splice off");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(equalsText(fake_.last<v1::CreateListenerRequest>("CreateListener"), R"pb(
    listener {
      name: "web"
      bind: "0.0.0.0:8080"
      cluster: "backends"
      max_connections: 10000
      buffer_limit_bytes: 65536
      idle_timeout { seconds: 300 }
      half_close_timeout { seconds: 30 }
      max_lifetime { seconds: 3600 }
      max_lifetime_jitter { nanos: 250000000 }
      allow: [ "10.0.0.0/8", "192.168.0.0/16" ]
      accept_proxy_protocol: true
      proxy_protocol_timeout { seconds: 3 }
      splice: SPLICE_MODE_OFF
    }
  )pb"));
  // The created listener as key: value lines.
  EXPECT_TRUE(std::regex_search(r.out, std::regex("(^|\\n)name: +web\\n"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nbuffer_limit: +64KiB\\n"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nidle_timeout: +5m\\n"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nsource: +api\\n"))) << r.out;
  EXPECT_EQ(r.err, "");
}

TEST_F(EvgatectlTest, ListenerCreateDryRunSetsValidateOnly) {
  const CtlResult r = ctl("listener create web --bind 0.0.0.0:0 --cluster c --dry-run -o json");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.err, "") << "json output carries no note";
  EXPECT_TRUE(equalsText(fake_.last<v1::CreateListenerRequest>("CreateListener"), R"pb(
    listener { name: "web" bind: "0.0.0.0:0" cluster: "c" }
    validate_only: true
  )pb"));
}

TEST_F(EvgatectlTest, ListenerUpdateMasksOnlyTheFlagsGiven) {
  ASSERT_EQ(
      ctl("listener update web --max-connections 5 --idle-timeout 30s --no-proxy-protocol").code,
      0);
  EXPECT_TRUE(equalsText(fake_.last<v1::UpdateListenerRequest>("UpdateListener"), R"pb(
    listener {
      name: "web"
      max_connections: 5
      idle_timeout { seconds: 30 }
    }
    update_mask { paths: [ "max_connections", "idle_timeout", "accept_proxy_protocol" ] }
  )pb"));

  ASSERT_EQ(ctl("listener update web --allow-all --cluster other --dry-run").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::UpdateListenerRequest>("UpdateListener"), R"pb(
    listener { name: "web" cluster: "other" }
    update_mask { paths: [ "cluster", "allow" ] }
    validate_only: true
  )pb"));

  // No field flag: an empty mask would mean "every field"; refused before sending.
  const CtlResult r = ctl("listener update web");
  EXPECT_EQ(r.code, 2) << r;
  EXPECT_EQ(fake_.calls("UpdateListener").size(), 2u);
}

TEST_F(EvgatectlTest, ListenerGetDeletePauseResume) {
  fake_.answer("GetListener", textProto<v1::Listener>(R"pb(
                 name: "web"
                 bind: "0.0.0.0:8080"
                 cluster: "backends"
                 paused: true
                 resume_time { seconds: 1900000000 }
                 allow: [ "10.0.0.0/8", "10.1.0.0/16" ]
               )pb"));
  CtlResult r = ctl("listener get web");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(equalsText(fake_.last<v1::GetListenerRequest>("GetListener"), R"pb(name: "web")pb"));
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\npaused: +yes\\n"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nresume_time: +2030-03-17T17:46:40Z\\n")))
      << r.out;
  EXPECT_TRUE(
      std::regex_search(r.out, std::regex("\\nallow: +10\\.0\\.0\\.0/8, 10\\.1\\.0\\.0/16")))
      << r.out;

  fake_.answer("DeleteListener", textProto<v1::DeleteListenerResponse>("draining_flows: 3"));
  r = ctl("listener delete web --drain-timeout 0");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "listener \"web\" deleted; 3 flows draining\n");
  // Zero is sent (close the flows now), not left unset (the configured drain_timeout).
  EXPECT_TRUE(equalsText(fake_.last<v1::DeleteListenerRequest>("DeleteListener"),
                         R"pb(name: "web"
                              drain_timeout {})pb"));
  ASSERT_EQ(ctl("listener delete web --dry-run").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::DeleteListenerRequest>("DeleteListener"),
                         R"pb(name: "web" validate_only: true)pb"));

  ASSERT_EQ(ctl("listener pause web --for 10m").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::PauseListenerRequest>("PauseListener"),
                         R"pb(name: "web"
                              duration { seconds: 600 })pb"));
  ASSERT_EQ(ctl("listener resume web --dry-run").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::ResumeListenerRequest>("ResumeListener"),
                         R"pb(name: "web" validate_only: true)pb"));
}

// --- cluster ------------------------------------------------------------------------------------

TEST_F(EvgatectlTest, ClusterCreateSendsEndpointsPolicyAndChecks) {
  const CtlResult r = ctl({"cluster",
                           "create",
                           "backends",
                           "--endpoint",
                           "10.0.0.5:9000=3",
                           "--endpoint",
                           "[2001:db8::5]:9000",
                           "--lb",
                           "least_connections",
                           "--connect-timeout",
                           "2s",
                           "--max-connect-attempts",
                           "4",
                           "--health-interval",
                           "5s",
                           "--health-timeout",
                           "1s",
                           "--unhealthy-threshold",
                           "3",
                           "--healthy-threshold",
                           "2",
                           "--outlier-failures",
                           "0",
                           "--send-proxy-protocol",
                           "v2",
                           "--source-address",
                           "10.0.0.2",
                           "--source-address",
                           "2001:db8::2"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(equalsText(fake_.last<v1::CreateClusterRequest>("CreateCluster"), R"pb(
    cluster {
      name: "backends"
      lb: LB_POLICY_LEAST_CONNECTIONS
      endpoints { address: "10.0.0.5:9000" weight: 3 }
      endpoints { address: "[2001:db8::5]:9000" }
      connect_timeout { seconds: 2 }
      max_connect_attempts: 4
      health_check {
        interval { seconds: 5 }
        timeout { seconds: 1 }
        unhealthy_threshold: 3
        healthy_threshold: 2
      }
      outlier { consecutive_failures: 0 }
      send_proxy_protocol: PROXY_PROTOCOL_VERSION_V2
      source_addresses: [ "10.0.0.2", "2001:db8::2" ]
    }
  )pb"));
}

TEST_F(EvgatectlTest, ClusterUpdateMasksOnlyTheFlagsGiven) {
  ASSERT_EQ(ctl("cluster update backends --lb random-two --endpoint 10.0.0.7:80=2").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::UpdateClusterRequest>("UpdateCluster"), R"pb(
    cluster {
      name: "backends"
      lb: LB_POLICY_RANDOM_TWO
      endpoints { address: "10.0.0.7:80" weight: 2 }
    }
    update_mask { paths: [ "endpoints", "lb" ] }
  )pb"));

  ASSERT_EQ(ctl("cluster update backends --no-health-check --dry-run").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::UpdateClusterRequest>("UpdateCluster"), R"pb(
    cluster { name: "backends" }
    update_mask { paths: [ "health_check" ] }
    validate_only: true
  )pb"));
  // Neither needed the current cluster.
  EXPECT_TRUE(fake_.calls("GetCluster").empty());
  EXPECT_EQ(ctl("cluster update backends").code, 2);
}

TEST_F(EvgatectlTest, ClusterUpdateSetsAndClearsSourceAddresses) {
  ASSERT_EQ(ctl("cluster update backends --source-address 10.0.0.2 --source-address 10.0.0.3").code,
            0);
  EXPECT_TRUE(equalsText(fake_.last<v1::UpdateClusterRequest>("UpdateCluster"), R"pb(
    cluster {
      name: "backends"
      source_addresses: [ "10.0.0.2", "10.0.0.3" ]
    }
    update_mask { paths: [ "source_addresses" ] }
  )pb"));
  ASSERT_EQ(ctl("cluster update backends --no-source-addresses").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::UpdateClusterRequest>("UpdateCluster"), R"pb(
    cluster { name: "backends" }
    update_mask { paths: [ "source_addresses" ] }
  )pb"));
  EXPECT_NE(ctl("cluster update backends --no-source-addresses --source-address 10.0.0.2").code, 0);
}

TEST_F(EvgatectlTest, ClusterUpdateOfOneHealthSettingKeepsTheOthers) {
  fake_.answer("GetCluster", textProto<v1::Cluster>(R"pb(
                 name: "backends"
                 lb: LB_POLICY_ROUND_ROBIN
                 endpoints { address: "10.0.0.5:9000" }
                 health_check {
                   interval { seconds: 5 }
                   timeout { seconds: 1 }
                   unhealthy_threshold: 3
                 }
               )pb"));
  ASSERT_EQ(ctl("cluster update backends --health-timeout 500ms --outlier-failures 2").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::GetClusterRequest>("GetCluster"), "name: 'backends'"));
  EXPECT_TRUE(equalsText(fake_.last<v1::UpdateClusterRequest>("UpdateCluster"), R"pb(
    cluster {
      name: "backends"
      health_check {
        interval { seconds: 5 }
        timeout { nanos: 500000000 }
        unhealthy_threshold: 3
      }
      outlier { consecutive_failures: 2 }
    }
    update_mask { paths: [ "health_check", "outlier" ] }
  )pb"));
}

TEST_F(EvgatectlTest, ClusterGetShowsEndpoints) {
  fake_.answer(
      "GetCluster", textProto<v1::Cluster>(R"pb(
        name: "backends"
        lb: LB_POLICY_HASH_CLIENT_IP
        endpoints { address: "10.0.0.5:9000" weight: 2 healthy: true active_connections: 9 }
        endpoints { address: "10.0.0.6:9000" state: ENDPOINT_STATE_DRAINING ejected: true }
        health_check { interval { seconds: 5 } }
        listeners: "web"
        source: SOURCE_FILE
        source_addresses: [ "10.0.0.2", "10.0.0.3" ]
      )pb"));
  const CtlResult r = ctl("cluster get backends");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(equalsText(fake_.last<v1::GetClusterRequest>("GetCluster"), "name: 'backends'"));
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nlb: +hash_client_ip\\n"))) << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\\nsource_addresses: +10\\.0\\.0\\.2, 10\\.0\\.0\\.3\\n")))
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\\nhealth_check: +interval 5s, timeout -")))
      << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\\nENDPOINT +WEIGHT +STATE +HEALTHY +EJECTED +CONNECTIONS\\n")))
      << r.out;
  EXPECT_TRUE(
      std::regex_search(r.out, std::regex("\\n10\\.0\\.0\\.5:9000 +2 +active +yes +no +9\\n")))
      << r.out;
  EXPECT_TRUE(
      std::regex_search(r.out, std::regex("\\n10\\.0\\.0\\.6:9000 +1 +draining +no +yes +0\\n")))
      << r.out;
}

TEST_F(EvgatectlTest, ClusterListDeleteAndEndpointVerbs) {
  fake_.answer("ListClusters", textProto<v1::ListClustersResponse>(R"pb(
                 clusters {
                   name: "backends"
                   lb: LB_POLICY_ROUND_ROBIN
                   endpoints { address: "a:1" healthy: true active_connections: 2 }
                   endpoints { address: "b:1" healthy: true ejected: true active_connections: 1 }
                   listeners: [ "web", "api" ]
                   source: SOURCE_API
                 }
               )pb"));
  CtlResult r = ctl("cluster list");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("^NAME +LB +ENDPOINTS +HEALTHY +CONNECTIONS +LISTENERS +SOURCE\\n")))
      << r.out;
  EXPECT_TRUE(
      std::regex_search(r.out, std::regex("\\nbackends +round_robin +2 +1 +3 +web, api +api\\n")))
      << r.out;

  r = ctl("cluster delete backends --dry-run");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "cluster \"backends\" deleted\n");
  EXPECT_TRUE(equalsText(fake_.last<v1::DeleteClusterRequest>("DeleteCluster"),
                         R"pb(name: "backends" validate_only: true)pb"));

  ASSERT_EQ(ctl("cluster endpoint backends 10.0.0.5:9000 draining").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::SetEndpointStateRequest>("SetEndpointState"), R"pb(
    cluster: "backends"
    address: "10.0.0.5:9000"
    state: ENDPOINT_STATE_DRAINING
  )pb"));

  ASSERT_EQ(
      ctl("cluster endpoint-add backends 10.0.0.9:9000 --weight 4 --state disabled --dry-run").code,
      0);
  EXPECT_TRUE(equalsText(fake_.last<v1::AddEndpointRequest>("AddEndpoint"), R"pb(
    cluster: "backends"
    endpoint { address: "10.0.0.9:9000" weight: 4 state: ENDPOINT_STATE_DISABLED }
    validate_only: true
  )pb"));

  ASSERT_EQ(ctl("cluster endpoint-remove backends 10.0.0.9:9000").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::RemoveEndpointRequest>("RemoveEndpoint"),
                         R"pb(cluster: "backends" address: "10.0.0.9:9000")pb"));
}

// --- flow ---------------------------------------------------------------------------------------

const char* const kFlowPage = R"pb(
  flows {
    id: 42
    worker: 1
    listener: "web"
    cluster: "backends"
    client: "10.1.2.3:5555"
    upstream: "10.0.0.5:9000"
    state: FLOW_STATE_ESTABLISHED
    age { seconds: 307 }
    idle { nanos: 850000000 }
    bytes_from_client: 1024
    bytes_from_upstream: 2048
    buffered_bytes: 0
  }
  next_page_token: "next"
)pb";

TEST_F(EvgatectlTest, FlowListSendsTheFilterAndShowsOnePage) {
  fake_.answer("ListFlows", textProto<v1::ListFlowsResponse>(kFlowPage));
  const CtlResult r =
      ctl("flow list --listener web --cluster backends --endpoint 10.0.0.5:9000 --client "
          "10.0.0.0/8 --min-age 1m --min-idle 10s --page-size 50");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(equalsText(fake_.last<v1::ListFlowsRequest>("ListFlows"), R"pb(
    filter {
      listener: "web"
      cluster: "backends"
      endpoint: "10.0.0.5:9000"
      client_cidr: "10.0.0.0/8"
      min_age { seconds: 60 }
      min_idle { seconds: 10 }
    }
    page_size: 50
  )pb"));
  EXPECT_TRUE(std::regex_search(r.out, std::regex("^ID +WORKER +LISTENER +CLUSTER +CLIENT")))
      << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\\n42 +1 +web +backends +10\\.1\\.2\\.3:5555 +10\\.0\\.0\\.5:9000 +"
                        "established +5m07s +850ms +1024 +2048 +0\\n")))
      << r.out;
  EXPECT_NE(r.err.find("--page-token next"), std::string::npos) << r;
  EXPECT_EQ(fake_.calls("ListFlows").size(), 1u);
}

TEST_F(EvgatectlTest, FlowListAllFollowsPageTokens) {
  fake_.answer("ListFlows", textProto<v1::ListFlowsResponse>(kFlowPage));
  fake_.answer("ListFlows", textProto<v1::ListFlowsResponse>("flows { id: 43 }"));
  const CtlResult r = ctl("flow list --all -o yaml");
  ASSERT_EQ(r.code, 0) << r;
  const auto calls = fake_.calls("ListFlows");
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_TRUE(
      equalsText(fake_.last<v1::ListFlowsRequest>("ListFlows"), R"pb(filter {}
                                                                     page_token: "next")pb"));
  const YAML::Node yaml = YAML::Load(r.out);
  ASSERT_EQ(yaml["flows"].size(), 2u) << r.out;
  EXPECT_EQ(yaml["flows"][0]["id"].as<std::string>(), "42");
  EXPECT_EQ(yaml["flows"][1]["id"].as<std::string>(), "43");
  EXPECT_EQ(yaml["next_page_token"].as<std::string>(), "");
}

TEST_F(EvgatectlTest, FlowClose) {
  const CtlResult r = ctl("flow close 18446744073709551615 --dry-run");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "flow 18446744073709551615 closed\n");
  EXPECT_TRUE(equalsText(fake_.last<v1::CloseFlowRequest>("CloseFlow"),
                         "id: 18446744073709551615 validate_only: true"));
}

// --- event --------------------------------------------------------------------------------------

TEST_F(EvgatectlTest, EventCreateEachTriggerAndAction) {
  ASSERT_EQ(ctl("event create night --after 5m --action pause-listener --listener web").code, 0);
  EXPECT_TRUE(equalsText(fake_.last<v1::CreateEventRequest>("CreateEvent"), R"pb(
    event {
      name: "night"
      after { seconds: 300 }
      action { pause_listener: "web" }
    }
  )pb"));

  ASSERT_EQ(ctl("event create shift --every 1h --count 3 --action set-endpoint-weight --cluster "
                "backends --endpoint 10.0.0.5:9000 --weight 5 --dry-run")
                .code,
            0);
  EXPECT_TRUE(equalsText(fake_.last<v1::CreateEventRequest>("CreateEvent"), R"pb(
    event {
      name: "shift"
      every {
        interval { seconds: 3600 }
        count: 3
      }
      action { set_endpoint_weight { cluster: "backends" address: "10.0.0.5:9000" weight: 5 } }
    }
    validate_only: true
  )pb"));

  ASSERT_EQ(ctl("event create cut --at 2030-01-02T03:04:05Z --action close-flows --client "
                "10.0.0.0/8 --min-age 1h")
                .code,
            0);
  EXPECT_TRUE(equalsText(fake_.last<v1::CreateEventRequest>("CreateEvent"), R"pb(
    event {
      name: "cut"
      at { seconds: 1893553445 }
      action {
        close_flows {
          client_cidr: "10.0.0.0/8"
          min_age { seconds: 3600 }
        }
      }
    }
  )pb"));

  ASSERT_EQ(ctl("event create off --after 1s --action set-endpoint-state --cluster b --endpoint "
                "a:1 --state disabled")
                .code,
            0);
  EXPECT_TRUE(equalsText(fake_.last<v1::CreateEventRequest>("CreateEvent"), R"pb(
    event {
      name: "off"
      after { seconds: 1 }
      action { set_endpoint_state { cluster: "b" address: "a:1" state: ENDPOINT_STATE_DISABLED } }
    }
  )pb"));
}

TEST_F(EvgatectlTest, EventCreateRefusesTriggersAndTargetsThatDoNotFit) {
  const std::vector<std::vector<std::string>> bad = {
      {"--action", "pause-listener", "--listener", "web"},  // no trigger
      {"--after", "1s", "--every", "1m", "--action", "pause-listener", "--listener", "web"},
      {"--after", "1s", "--count", "2", "--action", "pause-listener", "--listener", "web"},
      {"--after", "1s", "--action", "pause-listener"},  // no --listener
      {"--after", "1s", "--action", "pause-listener", "--listener", "w", "--state", "active"},
      {"--after", "1s", "--action", "set-endpoint-state", "--cluster", "c", "--endpoint", "a:1"},
      {"--after", "1s", "--action", "close-flows", "--weight", "2"},
      {"--after", "1s", "--action", "reboot"},
      {"--at", "tomorrow", "--action", "close-flows"},
  };
  for (const auto& flags : bad) {
    std::vector<std::string> args = {"event", "create", "x"};
    args.insert(args.end(), flags.begin(), flags.end());
    const CtlResult r = ctl(args);
    std::string line;
    for (const auto& word : flags) line += " " + word;
    EXPECT_EQ(r.code, 2) << "event create x" << line << "\n" << r;
  }
  EXPECT_TRUE(fake_.calls("CreateEvent").empty());
}

TEST_F(EvgatectlTest, EventListAndDelete) {
  fake_.answer(
      "ListEvents", textProto<v1::ListEventsResponse>(R"pb(
        events {
          loop: "worker-0"
          fd: 12
          kind: EVENT_KIND_IO
          flags: "read|persist"
          state: EVENT_STATE_PENDING
          owner: EVENT_OWNER_LISTENER
          label: "listener web"
        }
        scheduled_events {
          name: "night"
          every {
            interval { seconds: 3600 }
            count: 3
          }
          action {
            set_endpoint_state { cluster: "b" address: "a:1" state: ENDPOINT_STATE_DRAINING }
          }
          next_fire_time { seconds: 1900000000 }
          fired_count: 1
          last_result: "ok"
        }
      )pb"));
  CtlResult r = ctl("event list");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\\nnight +every 1h x3 +set-endpoint-state b a:1 draining +"
                        "2030-03-17T17:46:40Z +1 +ok\\n")))
      << r.out;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\\nworker-0 +12 +io +read\\|persist +pending +- +listener +listener web "
                        "+0\\n")))
      << r.out;

  r = ctl("event delete night --dry-run");
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(r.out, "event \"night\" deleted\n");
  EXPECT_TRUE(equalsText(fake_.last<v1::DeleteEventRequest>("DeleteEvent"),
                         R"pb(name: "night" validate_only: true)pb"));
}

}  // namespace
}  // namespace evgate::test
