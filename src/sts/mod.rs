//! AWS STS calls with `aws-sdk-sts`: AssumeRole / GetSessionToken with MFA, GetCallerIdentity
//! (`calls`), endpoint and region rules (`endpoints`), the timeouts and SDK configuration shared
//! with IAM (`config`), and AWS errors mapped to plain messages with the fix (`messages`).

mod calls;
mod config;
mod endpoints;
mod messages;

pub(crate) use calls::is_credential_text;
pub use calls::{CallContext, CallerIdentity, MfaCode, Sts, StsApi, base_credentials};
pub use config::{CONNECT_TIMEOUT_ENV, READ_TIMEOUT_ENV, Timeouts, https_client};
pub(crate) use config::{https_connector, sdk_config};
pub use endpoints::{DEFAULT_REGION, StsTarget, check_endpoint_url};
pub(crate) use messages::{error_chain, is_connect_error};
