"""AMQP connector (RabbitMQ via aio-pika): inbound consumer and outbound publisher."""
