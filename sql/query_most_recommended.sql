-- question: the 20 movies that appear in the most users' top 10, with their share of users.
-- no variables. DuckDB CLI, on the warehouse file: .read sql/query_most_recommended.sql
with top10 as (
    select item_id from recommendations where rank <= 10
),
users as (
    select count(distinct user_id) as n_users from recommendations
),
counted as (
    select item_id, count(*) as n_users_recommended
    from top10
    group by item_id
)
select
    counted.item_id,
    movies.title,
    counted.n_users_recommended,
    round(counted.n_users_recommended / users.n_users, 4) as share_of_users
from counted
cross join users
join movies as movies on movies.item_id = counted.item_id
order by counted.n_users_recommended desc, counted.item_id
limit 20
