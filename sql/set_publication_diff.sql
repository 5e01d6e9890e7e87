-- set-up for query_publication_diff from Python: the two publications to compare
-- ($old_publication_id, $new_publication_id, in either order) as the variable publication_diff_ids.
set variable publication_diff_ids = [$old_publication_id, $new_publication_id]
