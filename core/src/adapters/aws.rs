//! Shared AWS client configuration for the SQS and Secrets Manager adapters.
//!
//! Credentials come from the SDK's default chain: IRSA / EKS pod identity in production,
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` elsewhere. `endpoint_url` points the clients
//! at a local stand-in (moto) in tests and dev.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Loads the SDK configuration. Timeouts are explicit so an unreachable endpoint fails a
/// call in seconds instead of hanging a stage; the attempt timeout leaves room for SQS's
/// 20 s long polls.
pub async fn sdk_config(s: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(Duration::from_secs(30))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(70))
            .build(),
    );
    if let Some(r) = &s.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(u) = &s.endpoint_url {
        loader = loader.endpoint_url(u.clone());
    }
    loader.load().await
}

/// An error as one line with its cause chain, each cause said once (an SDK error's own
/// `Display` says only "service error" or "dispatch failure"; a port error's already says
/// what its source said).
pub fn describe<E: std::error::Error + ?Sized>(e: &E) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}
