//! The Kubernetes base, rendered by `kubectl kustomize` as `kubectl apply -k` would, and read
//! the way a reviewer reads it: the probes ask the ports and services the configuration serves,
//! the container runs as the image's uid on a read-only root, and the volumes sit where the
//! configuration and the environment expect them. Skipped, saying so, where kubectl is missing.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use token_authority::api::server::SERVICE_NAME;
use token_authority::state::config::{Config, ConfigSource};

const BASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// The rendered documents, or `None` (after saying why) where kubectl is not installed.
fn render() -> Option<Vec<Value>> {
    let output = match Command::new("kubectl").args(["kustomize", BASE]).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: kubectl is not installed; the Kubernetes base was not rendered");
            return None;
        }
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let docs = serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    Some(docs)
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// The uid the Dockerfile's runtime stage runs as (`USER uid:gid`).
fn image_uid() -> u64 {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the Dockerfile sets USER");
    user.split(':').next().unwrap().trim().parse().unwrap()
}

#[test]
fn the_kubernetes_base_serves_the_configured_ports_as_the_image_uid_on_a_read_only_root() {
    let Some(docs) = render() else { return };
    let deployment = one(&docs, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(
        spec["replicas"], 1,
        "keys are not shared across replicas yet"
    );
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], pod_labels);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // The configuration the pod reads: the ConfigMap, checked as `serve` would check it.
    let env = |name: &str| -> String {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{name} is not set"))
            .to_owned()
    };
    let config_path = env("TOKEN_AUTHORITY_CONFIG");
    let data_dir = env("TOKEN_AUTHORITY_DATA_DIR");
    let config_map = one(&docs, "ConfigMap");
    let config_file = Path::new(&config_path);
    let config_key = config_file.file_name().unwrap().to_str().unwrap();
    let config_text = config_map["data"][config_key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {config_key}"));
    let config = Config::check(
        ConfigSource::Text {
            text: Arc::from(config_text),
            origin: "the ConfigMap".to_owned(),
        },
        Path::new(&data_dir),
    )
    .unwrap();

    // Ports: what the configuration listens on, on every interface of the pod.
    let grpc_port = u64::from(config.listen.port());
    let http = config.http_listen.expect("the HTTP listener is on");
    assert!(config.listen.ip().is_unspecified() && http.ip().is_unspecified());
    let port = |name: &str| -> u64 {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(port("grpc"), grpc_port);
    assert_eq!(port("http"), u64::from(http.port()));
    let service = one(&docs, "Service");
    assert_eq!(&service["spec"]["selector"], pod_labels);
    let mut service_ports: Vec<(String, String)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].to_string(), p["targetPort"].to_string()))
        .collect();
    service_ports.sort();
    assert_eq!(
        service_ports,
        [
            ("\"grpc\"".to_owned(), "\"grpc\"".to_owned()),
            ("\"http\"".to_owned(), "\"http\"".to_owned())
        ]
    );

    // Probes: gRPC health on the gRPC port; readiness asks about the token service itself.
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(container[probe]["grpc"]["port"], grpc_port, "{probe}");
    }
    assert_eq!(container["readinessProbe"]["grpc"]["service"], SERVICE_NAME);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        Duration::from_secs(grace) > config.drain_timeout,
        "the grace period ({grace} s) must outlast the drain ({:?})",
        config.drain_timeout
    );

    // Security: the image's uid, nothing to escalate to, nothing writable but the volume.
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(pod_security["runAsUser"], image_uid());
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // Volumes: the ConfigMap where TOKEN_AUTHORITY_CONFIG points, the claim at the data dir.
    let mount_of = |path: &str| -> &Value {
        let name = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"))["name"]
            .clone();
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let config_volume = mount_of(config_file.parent().unwrap().to_str().unwrap());
    assert_eq!(
        config_volume["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    assert_eq!(config.data_dir, Path::new(&data_dir));
    let data_volume = mount_of(&data_dir);
    let claim = one(&docs, "PersistentVolumeClaim");
    assert_eq!(
        data_volume["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
}

#[test]
fn the_kubernetes_base_guards_the_single_pod_and_its_grpc_port() {
    let Some(docs) = render() else { return };
    let pod_labels = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
    let budget = one(&docs, "PodDisruptionBudget");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], pod_labels);
    assert_eq!(budget["spec"]["minAvailable"], 1);

    let policy = one(&docs, "NetworkPolicy");
    let spec = &policy["spec"];
    assert_eq!(&spec["podSelector"]["matchLabels"], pod_labels);
    assert_eq!(spec["egress"], serde_json::json!([]), "no outgoing traffic");
    let rules = spec["ingress"].as_array().unwrap();
    let grpc_rule = rules
        .iter()
        .find(|r| r["ports"][0]["port"] == "grpc")
        .expect("a rule for the gRPC port");
    // Only labelled client pods; an empty `from` would let every pod issue tokens.
    let from = grpc_rule["from"]
        .as_array()
        .expect("the gRPC port has sources");
    assert!(!from.is_empty());
    for source in from {
        assert_eq!(
            source["podSelector"]["matchLabels"],
            serde_json::json!({ "token-authority-client": "true" })
        );
    }
}
