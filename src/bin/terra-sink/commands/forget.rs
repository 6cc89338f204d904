//! `forget`: erases people from every table.

use anyhow::Context;
use terra_sink::ForgetRequest;

use super::open_database;
use crate::args::ForgetArgs;

/// Erases the named people in one transaction and prints the user ids it erased.
pub async fn run(args: ForgetArgs) -> anyhow::Result<()> {
    let pool = open_database(&args.database).await?;
    let request = ForgetRequest {
        user_ids: args.user_ids,
        reference_ids: args.reference_ids,
    };
    let forgotten = terra_sink::forget(&pool, &request)
        .await
        .context("forgetting failed; nothing was deleted")?;
    if forgotten.user_ids.is_empty() && forgotten.rows_deleted == 0 {
        anyhow::bail!("nothing is stored under these reference ids; nothing was deleted");
    }
    println!(
        "forgot {} user id(s): {}; {} rows deleted; later deliveries for them are not stored until a newer auth",
        forgotten.user_ids.len(),
        forgotten.user_ids.join(", "),
        forgotten.rows_deleted
    );
    Ok(())
}
