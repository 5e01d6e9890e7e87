-- question: which users have published recommendations (ids, ascending).
-- no variables. DuckDB CLI, on the warehouse file: .read sql/query_published_users.sql
with users as (
    select distinct user_id from recommendations
)
select user_id from users
order by user_id
