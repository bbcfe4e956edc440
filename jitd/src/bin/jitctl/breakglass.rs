//! `jitctl breakglass init`.

use clap::Subcommand;
use jit_proto::message::Payload;
use jit_proto::Request;

use crate::client::{print, print_json, Ctx, Fail};

// Arguments built only when this subcommand is parsed (see `Cmd` in jitctl's main.rs).
#[derive(Subcommand)]
#[command(defer = true)]
pub enum BreakglassCmd {
    /// Make N one-time emergency codes for a managed account.
    Init {
        /// Managed account.
        #[arg(long)]
        account: String,
        /// How many codes (1-20).
        #[arg(long)]
        count: u32,
        /// Void the account's existing codes and make new ones.
        #[arg(long)]
        replace: bool,
    },
}

/// Runs one `breakglass` subcommand.
pub fn run(ctx: &Ctx, cmd: &BreakglassCmd) -> Result<(), Fail> {
    let BreakglassCmd::Init {
        account,
        count,
        replace,
    } = cmd;
    let Payload::BreakglassCodes { account, codes } = ctx.call(Request::InitBreakglass {
        account: account.clone(),
        count: *count,
        replace: *replace,
    })?
    else {
        return Err(Fail::unexpected());
    };
    if ctx.json {
        return print_json(&serde_json::json!({ "account": account, "codes": codes }));
    }
    let mut text = format!(
        "Break-glass codes for {account} (shown once; jitd keeps only slow hashes). Each opens one emergency grant when no grant enables {account}; every use is audited at crit.\n"
    );
    for c in &codes {
        text.push_str(c);
        text.push('\n');
    }
    print(&text)
}
