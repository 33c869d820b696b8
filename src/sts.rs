//! AWS STS calls (aws-sdk-sts): AssumeRole / GetSessionToken with MFA, error mapping.
