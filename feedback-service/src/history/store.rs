//! SQL of work history and job-success inputs: keyset pages of a user's
//! feedback and the counts the Job Success Score is computed from.

use shared::db::rows::{Fetch, column};
use sqlx::{Any, Executor};

use crate::error::Error;
use crate::store::{
    END_COLUMNS, END_FEEDBACK, EndFeedback, MID_COLUMNS, MidFeedback, end_from_row, mid_from_row,
};
use shared::db::Page;
use shared::db::Reader;

/// Mid-contract feedback of these contracts, oldest first.
pub async fn mid_feedback_of_contracts<'e, E>(
    executor: E,
    contract_ids: &[String],
) -> Result<Vec<MidFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if contract_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {MID_COLUMNS} FROM mid_feedback WHERE contract_id IN ({{ids}}) ORDER BY created_at, id"
    );
    Ok(shared::db::query_with_ids(&sql, contract_ids)
        .all(executor, mid_from_row)
        .await?)
}

/// A page of a freelancer's (`page.key`) contracts that have feedback for
/// them, by contract id.
pub async fn history_contracts<'e, E>(executor: E, page: Page<'_>) -> Result<Vec<String>, Error>
where
    E: Executor<'e, Database = Any>,
{
    // Each side is cut to the page before the union, so a page reads
    // about `limit` index entries however long the history is.
    Ok(page
        .query(
            "SELECT contract_id FROM (\
               SELECT contract_id FROM (SELECT DISTINCT contract_id FROM mid_feedback \
                 WHERE freelancer_id = $1 AND contract_id > $2 ORDER BY contract_id LIMIT $3) AS mid \
               UNION SELECT contract_id FROM (SELECT contract_id FROM end_feedback \
                 WHERE freelancer_id = $1 AND direction = 'CLIENT_TO_FREELANCER' AND contract_id > $2 \
                 ORDER BY contract_id LIMIT $3) AS ended\
             ) AS history ORDER BY contract_id LIMIT $3",
        )
        .all(executor, column("contract_id"))
        .await?)
}

/// Client-to-freelancer feedback of these contracts.
pub async fn client_feedback_of_contracts<'e, E>(
    executor: E,
    contract_ids: &[String],
) -> Result<Vec<EndFeedback>, Error>
where
    E: Executor<'e, Database = Any>,
{
    if contract_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {END_COLUMNS} FROM end_feedback WHERE direction = 'CLIENT_TO_FREELANCER' AND contract_id IN ({{ids}})"
    );
    Ok(shared::db::query_with_ids(&sql, contract_ids)
        .all(executor, end_from_row)
        .await?)
}

/// A page of a freelancer's (`page.key`) received end-of-contract feedback
/// (Job Success inputs), in id order.
pub async fn job_success_inputs(db: &Reader, page: Page<'_>) -> Result<Vec<EndFeedback>, Error> {
    let received = "freelancer_id = $1 AND direction = 'CLIENT_TO_FREELANCER'";
    Ok(END_FEEDBACK.page(db, received, page).await?)
}
