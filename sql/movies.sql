-- movies: the catalogue from u.item; genres as a list and as one boolean flag per genre.
create table {{movies}} as
with src as (
    select * from read_parquet($path)
)
select
    cast(item_id as integer)             as item_id,
    title,
    cast(release_date as date)           as release_date,
    cast(video_release_date as date)     as video_release_date,
    imdb_url,
    cast(genres as varchar[])            as genres,
    genre_unknown,
    genre_action,
    genre_adventure,
    genre_animation,
    genre_childrens,
    genre_comedy,
    genre_crime,
    genre_documentary,
    genre_drama,
    genre_fantasy,
    genre_film_noir,
    genre_horror,
    genre_musical,
    genre_mystery,
    genre_romance,
    genre_sci_fi,
    genre_thriller,
    genre_war,
    genre_western
from src
order by item_id
