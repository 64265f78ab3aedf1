DROP TABLE consumer_dead_letters;
DROP TABLE inbox;
