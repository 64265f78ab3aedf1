DROP TABLE consumer_positions;
