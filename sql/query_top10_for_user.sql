-- question: the top 10 movies for one user ($user_id), with titles and genres.
with top10 as (
    select rank, item_id, title, genres, score, source, publication_id
    from {{user_recommendations}}
    where user_id = $user_id and rank <= 10
)
select * from top10
order by rank
