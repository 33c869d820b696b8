//! Last resort: the person types the code from their phone on the controlling terminal.

use zeroize::Zeroizing;

use crate::clock::window_of;
use crate::error::{Error, Result};
use crate::token::{Code, CodeRequest, TokenSource};
use crate::ui::Ui;

pub struct PromptSource;

impl TokenSource for PromptSource {
    fn describe(&self) -> String {
        "typed code".to_owned()
    }
    fn computes_any_time(&self) -> bool {
        false
    }
    fn code(&mut self, req: &CodeRequest<'_>, ui: &dyn Ui) -> Result<Code> {
        let prompt = format!(
            "MFA code for {} (profile {}): ",
            req.mfa_serial, req.profile
        );
        for _ in 0..3 {
            let Some(line) = ui.ask_line(&prompt)? else {
                return Err(Error::token(format!(
                    "profile \"{}\" needs an MFA code for {} and there is no terminal to ask on; set tapcred_token in the profile (oath, software) or run from a terminal",
                    req.profile, req.mfa_serial
                )));
            };
            let digits = Zeroizing::new(line.trim().to_owned());
            if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
                let now = crate::clock::now_unix();
                let (window_start, window_end) = window_of(now, 30);
                return Ok(Code {
                    digits,
                    window_start,
                    window_end,
                });
            }
            ui.warn("an AWS MFA code is exactly 6 digits; try again");
        }
        Err(Error::token(format!(
            "no valid 6-digit code was typed for {}",
            req.mfa_serial
        )))
    }
}
