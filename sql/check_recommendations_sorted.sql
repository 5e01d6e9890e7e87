-- check: scores never increase with rank within a user.
with stepped as (
    select user_id, rank, score, lag(score) over (partition by user_id order by rank) as previous_score
    from {{recommendations}}
)
select * from stepped where score > previous_score or score is null or isnan(score)
order by user_id, rank
limit 10
