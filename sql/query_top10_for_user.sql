-- question: the top 10 movies for one user, with titles and genres.
-- variables: user_id (default 1). DuckDB CLI, on the warehouse file:
--   set variable user_id = 42;
--   .read sql/query_top10_for_user.sql
with top10 as (
    select rank, item_id, title, genres, predicted_rating, score, source, publication_id
    from user_recommendations
    where user_id = coalesce(getvariable('user_id'), 1) and rank <= 10
)
select * from top10
order by rank
