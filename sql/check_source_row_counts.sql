-- check: the warehouse tables hold exactly the rows listed in the lake snapshot's manifest.
with counts as (
    select 'ratings' as table_name, (select count(*) from {{ratings}}) as n_rows, $ratings_rows as expected
    union all
    select 'movies', (select count(*) from {{movies}}), $movies_rows
    union all
    select 'users', (select count(*) from {{users}}), $users_rows
    union all
    select 'genres', (select count(*) from {{genres}}), $genres_rows
)
select * from counts where n_rows <> expected
